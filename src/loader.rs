//! Batches over the preprocessed cache: seeded shuffling, optional sex filter,
//! augmentation of training batches, all on the training device. Images are kept
//! as u8 on the device when they fit (the GPU then never waits for data), else on
//! the CPU with each batch moved over.
use polars::prelude::DataFrame;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::augment::{self, AugmentConfig};
use crate::cache::ImageCache;
use crate::dataset;
use crate::error::{Error, Result};
use crate::folds::SexFilter;
use crate::model::{Target, AGE_CENTER, AGE_SCALE};

/// Batching options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Drop the last, smaller batch of an epoch.
    pub drop_last: bool,
    /// Keep only these rows.
    pub sex: SexFilter,
    /// Keep the cache on the training device when it fits.
    pub cache_on_device: bool,
}

impl LoaderConfig {
    /// An empty batch is an error naming `loader.batch_size`.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::ConfigKey {
                key: "loader.batch_size".into(),
                message: "0 must be >= 1".into(),
            });
        }
        Ok(())
    }
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 8,
            drop_last: false,
            sex: SexFilter::All,
            cache_on_device: true,
        }
    }
}

/// One batch on the device.
#[derive(Debug)]
pub struct Batch {
    /// `[N, 1, H, W]` f32, standardised to [−1, 1].
    pub images: Tensor,
    /// `[N, 1]` f32: standardised age, or 1/0 for male/female. NaN when unlabelled.
    pub targets: Tensor,
    /// `[N, 1]` f32, 1 = male.
    pub male: Tensor,
    pub ids: Vec<i64>,
}

/// Batches over the rows of a frame whose images are in an [`ImageCache`].
#[derive(Debug)]
pub struct BatchLoader {
    images: Tensor,  // [N, 1, Hc, Wc] u8, on `device` or the CPU
    targets: Tensor, // [N, 1] f32 on the CPU
    male: Tensor,    // [N, 1] f32 on the CPU
    ids: Vec<i64>,
    out: [usize; 2],
    pub config: LoaderConfig,
    pub augment: Option<AugmentConfig>,
    pub device: Device,
    pub seed: u64,
}

impl BatchLoader {
    /// `frame` must be the one `cache` was built from. Pass `augment` for training.
    pub fn new(
        cache: &ImageCache,
        frame: &DataFrame,
        target: Target,
        config: LoaderConfig,
        augment: Option<AugmentConfig>,
        device: Device,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        let ids = dataset::ids(frame)?;
        if ids != cache.ids {
            return Err(Error::Frame(
                "the cache was built from another frame (ids differ)".into(),
            ));
        }
        let males = dataset::males(frame)?;
        let targets: Vec<f32> = match target {
            Target::Sex => males.iter().map(|&m| m as u8 as f32).collect(),
            Target::Age if frame.column("boneage").is_ok() => dataset::ages(frame)?
                .iter()
                .map(|a| ((a - AGE_CENTER) / AGE_SCALE) as f32)
                .collect(),
            Target::Age => vec![f32::NAN; ids.len()],
        };
        let skipped: std::collections::HashSet<i64> = cache.skipped.iter().copied().collect();
        let keep: Vec<i64> = (0..ids.len() as i64)
            .filter(|&i| !skipped.contains(&ids[i as usize]))
            .filter(|&i| match config.sex {
                SexFilter::All => true,
                SexFilter::Male => males[i as usize],
                SexFilter::Female => !males[i as usize],
            })
            .collect();
        let index = Tensor::from_slice(&keep);
        let column = |v: Vec<f32>| Tensor::from_slice(&v).view([-1, 1]).index_select(0, &index);
        let mut images = cache.images.index_select(0, &index);
        if config.cache_on_device && device != Device::Cpu {
            match images.f_to_device(device) {
                Ok(on_device) => images = on_device,
                Err(e) => tracing::warn!(
                    "image cache stays on the CPU ({e}); batches are copied to {device:?}"
                ),
            }
        }
        Ok(Self {
            images,
            targets: column(targets),
            male: column(males.iter().map(|&m| m as u8 as f32).collect()),
            ids: keep.iter().map(|&i| ids[i as usize]).collect(),
            out: cache.geometry.out,
            config,
            augment: augment.filter(|a| a.enabled),
            device,
            seed,
        })
    }

    /// Rows after the sex filter.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        if self.config.drop_last {
            self.len() / self.config.batch_size
        } else {
            self.len().div_ceil(self.config.batch_size)
        }
    }

    /// The network's input [H, W].
    pub fn input_size(&self) -> [usize; 2] {
        self.out
    }

    /// One epoch's batches: shuffled and augmented when augmenting (training), in
    /// order otherwise. The same `epoch` always gives the same batches.
    pub fn epoch(&self, epoch: u64) -> impl Iterator<Item = Batch> + '_ {
        let mut rng = StdRng::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut order: Vec<i64> = (0..self.len() as i64).collect();
        if self.augment.is_some() {
            order.shuffle(&mut rng);
        }
        let bs = self.config.batch_size;
        (0..self.num_batches()).map(move |b| {
            let rows = &order[b * bs..((b + 1) * bs).min(order.len())];
            self.batch(rows, &mut rng)
        })
    }

    fn batch(&self, rows: &[i64], rng: &mut StdRng) -> Batch {
        let index = Tensor::from_slice(rows);
        let raw = self
            .images
            .index_select(0, &index.to_device(self.images.device()));
        let raw = augment::on(self.device, raw);
        let x = match &self.augment {
            Some(cfg) => {
                let params: Vec<_> = rows.iter().map(|_| cfg.sample(rng)).collect();
                augment::augment(&raw, self.out, &params)
            }
            None => augment::center_crop(&raw, self.out),
        };
        Batch {
            images: augment::standardize(&x),
            targets: augment::on(self.device, self.targets.index_select(0, &index)),
            male: augment::on(self.device, self.male.index_select(0, &index)),
            ids: rows.iter().map(|&r| self.ids[r as usize]).collect(),
        }
    }
}
