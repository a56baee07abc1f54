//! `bone-age bench pipeline`: data-pipeline throughput, measured against the
//! OpenCV/albumentations peer (`scripts/bench_peer.py`) on the same images in the
//! same run, reported as ratios. `bone-age bench train` is in [`step`].
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::augment::AugmentConfig;
use crate::cache::ImageCache;
use crate::dataset::{self, Dataset};
use crate::error::{Error, Result};
use crate::loader::{BatchLoader, LoaderConfig};
use crate::model::Target;
use crate::preprocess::Preprocess;

pub mod step;
mod step_report;

/// The peer's figures (images/s on one core).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerFigures {
    pub decode_crop_scale: f64,
    /// The original's per-epoch pipeline: decode, augment (albumentations), crop, scale.
    pub redecode_augment: f64,
    pub versions: String,
}

/// Our figures, the peer's, and the ratios.
#[derive(Clone, Debug, Serialize)]
pub struct PipelineReport {
    pub data_dir: PathBuf,
    pub images: usize,
    pub input_size: [u32; 2],
    pub cached_size: [usize; 2],
    pub out_size: [usize; 2],
    pub cores: usize,
    /// Decode + crop (or fit) + scale, images/s.
    pub decode_1core: f64,
    pub decode_all_cores: f64,
    pub cache_build_s: f64,
    /// One epoch read from the in-memory cache with augmentation on the CPU, images/s.
    pub epoch_from_cache: f64,
    pub epoch_images: usize,
    pub peer: Option<PeerFigures>,
    /// decode_1core / peer decode (target ≥ 1.5).
    pub ratio_decode_per_core: Option<f64>,
    /// epoch_from_cache / peer re-decoding pipeline (target ≥ 20).
    pub ratio_epoch_vs_redecode: Option<f64>,
}

/// Runs the benchmark on the `train` split of `data_dir`. `peer` is the Python
/// interpreter and script; `None` skips the peer (reported as absent).
pub fn pipeline(
    data_dir: &Path,
    pre: &Preprocess,
    epoch_images: usize,
    peer: Option<(&Path, &Path)>,
) -> Result<PipelineReport> {
    let (_, ds) = Dataset::from_dir(data_dir, dataset::Split::Train, None)?;
    let paths = dataset::paths(&ds.frame)?;
    let input_size = crate::preprocess::dimensions(&paths[0])?;
    let decode_pass = |threads: usize| -> Result<f64> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::Invalid {
                what: "thread pool".into(),
                message: e.to_string(),
            })?;
        let start = Instant::now();
        pool.install(|| paths.par_iter().try_for_each(|p| pre.load(p).map(drop)))?;
        Ok(paths.len() as f64 / start.elapsed().as_secs_f64())
    };
    pre.load(&paths[0])?; // warm the file cache and code paths
    let cores = rayon::current_num_threads();
    let decode_1core = decode_pass(1)?;
    let decode_all_cores = decode_pass(cores)?;

    let cache_dir = tempdir()?;
    let start = Instant::now();
    let cache = ImageCache::open(&ds.frame, pre, &cache_dir)?;
    let cache_build_s = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&cache_dir);

    let loader = BatchLoader::new(
        &cache,
        &ds.frame,
        Target::Age,
        LoaderConfig::default(),
        Some(AugmentConfig::default()),
        Device::Cpu,
        0,
    )?;
    let (mut seen, mut epoch) = (0, 0);
    let start = Instant::now();
    while seen < epoch_images {
        for batch in loader.epoch(epoch) {
            seen += batch.ids.len();
        }
        epoch += 1;
    }
    let epoch_from_cache = seen as f64 / start.elapsed().as_secs_f64();

    let peer = match peer {
        Some((python, script)) => Some(run_peer(python, script, data_dir, pre)?),
        None => None,
    };
    Ok(PipelineReport {
        data_dir: data_dir.to_path_buf(),
        images: paths.len(),
        input_size,
        cached_size: cache.geometry.cached,
        out_size: cache.geometry.out,
        cores,
        decode_1core,
        decode_all_cores,
        cache_build_s,
        epoch_from_cache,
        epoch_images: seen,
        ratio_decode_per_core: peer.as_ref().map(|p| decode_1core / p.decode_crop_scale),
        ratio_epoch_vs_redecode: peer.as_ref().map(|p| epoch_from_cache / p.redecode_augment),
        peer,
    })
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("bone-age-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

fn run_peer(
    python: &Path,
    script: &Path,
    data_dir: &Path,
    pre: &Preprocess,
) -> Result<PeerFigures> {
    let mut args = vec!["--data-dir".to_string(), data_dir.display().to_string()];
    if let Some([h, w]) = pre.fit {
        args.extend(["--fit".to_string(), format!("{h}x{w}")]);
    }
    run_script(python, script, &args)
}

/// Runs a Python peer with `args` and `--json`, and reads the JSON object it prints.
pub(crate) fn run_script<T: serde::de::DeserializeOwned>(
    python: &Path,
    script: &Path,
    args: &[String],
) -> Result<T> {
    let fail = |m: String| Error::Invalid {
        what: "peer benchmark".into(),
        message: m,
    };
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .arg("--json")
        .output()
        .map_err(|e| fail(format!("cannot run {}: {e}", python.display())))?;
    if !out.status.success() {
        return Err(fail(format!(
            "{} failed:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("unreadable output ({e})")))
}

impl fmt::Display for PipelineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [ih, iw] = self.input_size;
        writeln!(
            f,
            "data: {} ({} images, first {ih}×{iw}) → cached {}×{} → input {}×{}; {} cores",
            self.data_dir.display(),
            self.images,
            self.cached_size[0],
            self.cached_size[1],
            self.out_size[0],
            self.out_size[1],
            self.cores
        )?;
        let peer = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.1} img/s"));
        let ratio = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.2}×"));
        writeln!(
            f,
            "{:<34} {:>12} {:>16} {:>8} {:>7}",
            "", "bone-age", "OpenCV peer", "ratio", "target"
        )?;
        writeln!(
            f,
            "{:<34} {:>12} {:>16} {:>8} {:>7}",
            "decode+crop+scale, 1 core",
            format!("{:.1} img/s", self.decode_1core),
            peer(self.peer.as_ref().map(|p| p.decode_crop_scale)),
            ratio(self.ratio_decode_per_core),
            "≥1.5×"
        )?;
        writeln!(
            f,
            "{:<34} {:>12}",
            format!("decode+crop+scale, {} cores", self.cores),
            format!("{:.1} img/s", self.decode_all_cores)
        )?;
        writeln!(
            f,
            "{:<34} {:>12}",
            format!("cache build ({} images)", self.images),
            format!("{:.2} s", self.cache_build_s)
        )?;
        writeln!(
            f,
            "{:<34} {:>12} {:>16} {:>8} {:>7}",
            format!("epoch from cache + aug ({} img)", self.epoch_images),
            format!("{:.1} img/s", self.epoch_from_cache),
            peer(self.peer.as_ref().map(|p| p.redecode_augment)),
            ratio(self.ratio_epoch_vs_redecode),
            "≥20×"
        )?;
        match &self.peer {
            Some(p) => write!(
                f,
                "peer: {} (1 core; its second figure re-decodes and augments every image)",
                p.versions
            ),
            None => write!(f, "peer: not run"),
        }
    }
}
