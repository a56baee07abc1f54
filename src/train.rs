//! Training as in the recipe: L1 loss on the standardised age (BCE for sex), Adam
//! lr 2e-5, betas (0.5, 0.999), batch 8, 50 epochs, fold 10 of 10 held out, seed 42.
//!
//! Each epoch reports train/validation loss, validation MAE (months) or accuracy, time
//! and images/s, and appends them to `metrics.csv` and TensorBoard events in the run
//! directory, which also holds the resolved `config.toml`, `best.*` and `last.*`
//! checkpoints, the optimizer state and `curves.png` (redrawn every epoch). A killed
//! run continues with `resume`: weights, Adam moments and the epoch counter are
//! restored, and every random stream is a function of (seed, epoch), so on the CPU the
//! resumed run ends with the same weights.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use crate::cache::ImageCache;
use crate::checkpoint::{self, CheckpointMeta, EpochMetrics, Versions};
use crate::config::Config;
use crate::dataset::{Dataset, Split};
use crate::error::{Error, Result};
use crate::loader::{BatchLoader, Target, AGE_SCALE};
use crate::model::M46;
use crate::optim::Adam;
use crate::tensorboard::EventWriter;

/// Optimisation settings. `Default` is the recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub lr: f64,
    pub betas: [f64; 2],
    pub weight_decay: f64,
    /// `constant` (the recipe), `cosine` (to `min_lr`) or `step` (× `step_gamma` every `step_every` epochs).
    pub schedule: String,
    pub min_lr: f64,
    pub step_every: usize,
    pub step_gamma: f64,
    /// CUDA only: channels-last memory format for convolutions.
    pub channels_last: bool,
    /// CUDA only: cuDNN autotuning.
    pub cudnn_benchmark: bool,
    /// CUDA only: bf16 mixed precision through libtorch autocast.
    pub autocast: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 50,
            lr: 2e-5,
            betas: [0.5, 0.999],
            weight_decay: 0.0,
            schedule: "constant".into(),
            min_lr: 0.0,
            step_every: 10,
            step_gamma: 0.1,
            channels_last: true,
            cudnn_benchmark: true,
            autocast: false,
        }
    }
}

impl TrainConfig {
    /// Learning rate of `epoch` (1-based); a function of the epoch alone, so resuming is exact.
    pub fn lr_at(&self, epoch: usize) -> Result<f64> {
        match self.schedule.as_str() {
            "constant" => Ok(self.lr),
            "cosine" => {
                let t = (epoch - 1) as f64 / self.epochs.max(1) as f64;
                Ok(self.min_lr
                    + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * t).cos()))
            }
            "step" => Ok(self.lr
                * self
                    .step_gamma
                    .powi(((epoch - 1) / self.step_every.max(1)) as i32)),
            other => Err(Error::Invalid {
                what: "train.schedule".into(),
                message: format!("{other:?}: expected constant, cosine or step"),
            }),
        }
    }
}

/// How a call to [`train`] runs.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Continue from `last.safetensors` in the run directory.
    pub resume: bool,
    /// Stop (as if killed) after this epoch, without finishing the run. For tests.
    pub stop_after_epoch: Option<usize>,
    /// Show progress bars.
    pub progress: bool,
}

/// What a finished (or stopped) run leaves.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    pub history: Vec<EpochMetrics>,
    pub best: PathBuf,
    pub last: PathBuf,
}

/// The training and validation frames of `config.split` over `data_dir`'s train split.
pub fn split_frames(
    config: &Config,
    data_dir: &Path,
) -> Result<(polars::prelude::DataFrame, polars::prelude::DataFrame)> {
    let (_, ds) = Dataset::from_dir(data_dir, Split::Train, config.data.layout)?;
    let s = &config.split;
    crate::folds::split(
        &ds.frame,
        s.test_fold,
        s.n_folds,
        s.sex,
        s.method,
        config.runtime.seed,
    )
}

/// Trains `config` on `data_dir` into `run_dir`, calling `on_epoch` after each epoch.
pub fn train(
    config: &Config,
    data_dir: &Path,
    run_dir: &Path,
    options: &TrainOptions,
    mut on_epoch: impl FnMut(&EpochMetrics),
) -> Result<TrainSummary> {
    let device = crate::runtime::init(config)?;
    let tc = &config.train;
    tc.lr_at(1)?;
    std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
    let (last, best) = (
        run_dir.join("last.safetensors"),
        run_dir.join("best.safetensors"),
    );
    let optim_path = run_dir.join("last.optim.safetensors");
    if !options.resume && last.exists() {
        return Err(Error::Invalid {
            what: "run directory".into(),
            message: format!(
                "{} already holds a run; pass --resume to continue it or choose another --out",
                run_dir.display()
            ),
        });
    }
    config.save(&run_dir.join("config.toml"))?;

    let (train_df, val_df) = split_frames(config, data_dir)?;
    tracing::info!(train = train_df.height(), val = val_df.height(), "split");
    let cache_dir = config.paths.cache_dir();
    let train_cache = ImageCache::open(&train_df, &config.preprocess, &cache_dir)?;
    let val_cache = ImageCache::open(&val_df, &config.preprocess, &cache_dir)?;
    let target = config.model.target;
    let seed = config.runtime.seed;
    let train_loader = BatchLoader::new(
        &train_cache,
        &train_df,
        target,
        config.loader.clone(),
        Some(config.augment.clone()),
        device,
        seed,
    )?;
    let val_config = crate::loader::LoaderConfig {
        drop_last: false,
        ..config.loader.clone()
    };
    let val_loader = BatchLoader::new(&val_cache, &val_df, target, val_config, None, device, seed)?;
    if train_loader.is_empty() || val_loader.is_empty() {
        return Err(Error::Invalid {
            what: "split".into(),
            message: "the training or validation set is empty".into(),
        });
    }
    let [h, w] = train_loader.input_size().map(|v| v as i64);

    let mut vs = nn::VarStore::new(device);
    let model = M46::new(&vs.root(), [1, h, w], config.model.clone())?;
    let mut opt = Adam::new(&vs, tc.lr, (tc.betas[0], tc.betas[1]), tc.weight_decay);
    let (mut start_epoch, mut best_loss, mut history) = (1, f64::INFINITY, read_metrics(run_dir)?);
    if options.resume && last.exists() {
        let meta = checkpoint::read_meta(&last)?;
        vs.load(&last).map_err(|e| Error::Checkpoint {
            path: last.clone(),
            message: e.to_string(),
        })?;
        opt.load(&optim_path)?;
        (start_epoch, best_loss) = (meta.epoch + 1, meta.best_val_loss);
        history.retain(|m| m.epoch <= meta.epoch);
        write_metrics(run_dir, &history)?;
        tracing::info!(epoch = meta.epoch, "resumed");
    }
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(tc.cudnn_benchmark);
        if tc.channels_last {
            tch::no_grad(|| {
                for (_, mut v) in vs.variables() {
                    if v.dim() == 4 {
                        v.set_data(&channels_last(&v));
                    }
                }
            });
        }
    }
    if device.is_cuda() && tc.autocast {
        set_cuda_autocast_bf16(true);
    }
    let mut events = EventWriter::create(run_dir)?;

    for epoch in start_epoch..=tc.epochs {
        tch::manual_seed(seed.wrapping_add(epoch as u64) as i64);
        opt.lr = tc.lr_at(epoch)?;
        let started = Instant::now();
        let bar = crate::progress::bar(
            train_loader.num_batches() as u64,
            &format!("epoch {epoch}/{}", tc.epochs),
        );
        if !options.progress {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for (b, batch) in train_loader.epoch(epoch as u64).enumerate() {
            let x = if device.is_cuda() && tc.channels_last {
                channels_last(&batch.images)
            } else {
                batch.images
            };
            let out = tch::autocast(tc.autocast && device.is_cuda(), || {
                model.forward(&x, Some(&batch.male), true)
            });
            let loss = loss_fn(target, &out.to_kind(Kind::Float), &batch.targets);
            let value = f64::try_from(&loss)?;
            if !value.is_finite() {
                bar.abandon();
                return Err(Error::Training {
                    epoch,
                    batch: b + 1,
                    message: format!(
                        "the loss is {value}; nothing was saved for this epoch, the last good checkpoint {} is intact \
                         (lower train.lr, or check the data)",
                        last.display()
                    ),
                });
            }
            opt.zero_grad();
            loss.backward();
            opt.step();
            let n = batch.ids.len();
            (loss_sum, seen) = (loss_sum + value * n as f64, seen + n);
            bar.inc(1);
            bar.set_message(format!("epoch {epoch} loss {:.4}", loss_sum / seen as f64));
        }
        bar.finish_and_clear();
        let train_seconds = started.elapsed().as_secs_f64();
        let (val_loss, mae, acc) = validate(&model, &val_loader, target)?;
        let metrics = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen as f64,
            val_loss,
            val_mae_months: mae,
            val_accuracy: acc,
            lr: opt.lr,
            seconds: started.elapsed().as_secs_f64(),
            images_per_s: seen as f64 / train_seconds,
        };
        if val_loss < best_loss {
            best_loss = val_loss;
            checkpoint::save(&vs, &best, &meta(config, &metrics, best_loss, [1, h, w]))?;
        }
        checkpoint::save(&vs, &last, &meta(config, &metrics, best_loss, [1, h, w]))?;
        opt.save(&optim_path)?;
        history.push(metrics.clone());
        write_metrics(run_dir, &history)?;
        // A figure is a convenience: failing to draw it must not stop training.
        let curves = crate::plot::TrainingCurves {
            history: history.clone(),
        };
        if let Err(e) = crate::plot::save(&curves, &run_dir.join("curves.png"), None) {
            tracing::warn!("training curves not drawn: {e}");
        }
        let mut scalars = vec![
            ("loss/train", metrics.train_loss),
            ("loss/val", val_loss),
            ("lr", opt.lr),
            ("images_per_s", metrics.images_per_s),
        ];
        scalars.extend(mae.map(|m| ("val/mae_months", m)));
        scalars.extend(acc.map(|a| ("val/accuracy", a)));
        events.scalars(epoch as i64, &scalars)?;
        on_epoch(&metrics);
        if options.stop_after_epoch == Some(epoch) {
            break;
        }
    }
    Ok(TrainSummary {
        run_dir: run_dir.to_path_buf(),
        history,
        best,
        last,
    })
}

extern "C" {
    fn bone_age_set_cuda_autocast_bf16(bf16: i32);
    fn bone_age_cuda_autocast_is_bf16() -> i32;
}

/// Selects bfloat16 (else float16) as libtorch's CUDA autocast dtype; `tch::autocast`
/// only switches autocast on and off (csrc/autocast.cpp).
pub fn set_cuda_autocast_bf16(bf16: bool) {
    // SAFETY: plain calls into libtorch's global autocast settings; no pointers cross.
    unsafe { bone_age_set_cuda_autocast_bf16(i32::from(bf16)) }
}

/// Whether libtorch's CUDA autocast dtype is bfloat16.
pub fn cuda_autocast_is_bf16() -> bool {
    // SAFETY: as above.
    unsafe { bone_age_cuda_autocast_is_bf16() != 0 }
}

/// Channels-last strides for a 4-d tensor (the permute–contiguous–permute idiom).
fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

fn meta(config: &Config, metrics: &EpochMetrics, best: f64, input: [i64; 3]) -> CheckpointMeta {
    CheckpointMeta {
        config: config.clone(),
        epoch: metrics.epoch,
        metrics: metrics.clone(),
        best_val_loss: best,
        input_shape: input,
        versions: Versions::current(),
    }
}

/// L1 on the standardised age; BCE (on the logit) for sex.
pub fn loss_fn(target: Target, out: &Tensor, y: &Tensor) -> Tensor {
    match target {
        Target::Age => out.l1_loss(y, tch::Reduction::Mean),
        Target::Sex => {
            out.binary_cross_entropy_with_logits::<Tensor>(y, None, None, tch::Reduction::Mean)
        }
    }
}

/// Validation loss, MAE in months (age) or accuracy (sex).
pub fn validate(
    model: &M46,
    loader: &BatchLoader,
    target: Target,
) -> Result<(f64, Option<f64>, Option<f64>)> {
    let (mut loss, mut abs, mut correct, mut n) = (0.0, 0.0, 0.0, 0usize);
    tch::no_grad(|| -> Result<()> {
        for batch in loader.epoch(0) {
            let out = model
                .forward(&batch.images, Some(&batch.male), false)
                .to_kind(Kind::Float);
            let k = batch.ids.len();
            loss += f64::try_from(loss_fn(target, &out, &batch.targets))? * k as f64;
            match target {
                Target::Age => {
                    abs +=
                        f64::try_from((&out - &batch.targets).abs().sum(Kind::Double))? * AGE_SCALE
                }
                Target::Sex => {
                    correct += f64::try_from(
                        out.ge(0.0)
                            .to_kind(Kind::Float)
                            .eq_tensor(&batch.targets)
                            .sum(Kind::Double),
                    )?
                }
            }
            n += k;
        }
        Ok(())
    })?;
    let n = n as f64;
    Ok(match target {
        Target::Age => (loss / n, Some(abs / n), None),
        Target::Sex => (loss / n, None, Some(correct / n)),
    })
}

const METRICS_HEADER: &str =
    "epoch,train_loss,val_loss,val_mae_months,val_accuracy,lr,seconds,images_per_s";

fn write_metrics(run_dir: &Path, history: &[EpochMetrics]) -> Result<()> {
    let path = run_dir.join("metrics.csv");
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    checkpoint::atomic(&path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        writeln!(f, "{METRICS_HEADER}").map_err(|e| Error::io(tmp, e))?;
        for m in history {
            writeln!(
                f,
                "{},{},{},{},{},{},{},{}",
                m.epoch,
                m.train_loss,
                m.val_loss,
                opt(m.val_mae_months),
                opt(m.val_accuracy),
                m.lr,
                m.seconds,
                m.images_per_s
            )
            .map_err(|e| Error::io(tmp, e))?;
        }
        Ok(())
    })
}

/// Reads `metrics.csv` from a run directory (empty when absent).
pub fn read_metrics(run_dir: &Path) -> Result<Vec<EpochMetrics>> {
    let path = run_dir.join("metrics.csv");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut reader = csv::Reader::from_path(&path).map_err(|e| Error::Dataset {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| Error::Dataset {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let num = |i: usize| row.get(i).and_then(|v| v.parse::<f64>().ok());
        out.push(EpochMetrics {
            epoch: num(0).unwrap_or(0.0) as usize,
            train_loss: num(1).unwrap_or(f64::NAN),
            val_loss: num(2).unwrap_or(f64::NAN),
            val_mae_months: num(3),
            val_accuracy: num(4),
            lr: num(5).unwrap_or(f64::NAN),
            seconds: num(6).unwrap_or(f64::NAN),
            images_per_s: num(7).unwrap_or(f64::NAN),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_autocast_dtype_switch_reaches_libtorch() {
        set_cuda_autocast_bf16(true);
        assert!(cuda_autocast_is_bf16());
        set_cuda_autocast_bf16(false);
        assert!(!cuda_autocast_is_bf16());
    }

    #[test]
    fn schedules_are_functions_of_the_epoch() {
        let c = TrainConfig {
            lr: 1.0,
            epochs: 10,
            ..Default::default()
        };
        assert_eq!(c.lr_at(7).unwrap(), 1.0);
        let cos = TrainConfig {
            schedule: "cosine".into(),
            ..c.clone()
        };
        assert_eq!(cos.lr_at(1).unwrap(), 1.0);
        assert!((cos.lr_at(6).unwrap() - 0.5).abs() < 1e-12);
        let step = TrainConfig {
            schedule: "step".into(),
            step_every: 3,
            step_gamma: 0.5,
            ..c.clone()
        };
        assert_eq!((step.lr_at(3).unwrap(), step.lr_at(4).unwrap()), (1.0, 0.5));
        let bad = TrainConfig {
            schedule: "warp".into(),
            ..c
        };
        assert!(bad.lr_at(1).unwrap_err().to_string().contains("warp"));
    }
}
