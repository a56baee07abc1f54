//! bone-age: pediatric bone age assessment from left-hand radiographs, the
//! `ml-recipe-bone-age` m46 recipe (Iglovikov et al., DLMIA 2018) in Rust on tch.
//!
//! The modules below are grouped by stage in pipeline order, and no two of them depend
//! on each other in a cycle (`python3 scripts/module_graph.py` lists the graph and checks
//! it). Each config section's type lives in its stage's module; [`config`] composes them.
//! The whole flow, as `make demo` runs it on the built-in phantom data:
//!
//! ```no_run
//! use std::path::Path;
//!
//! use bone_age::evaluate::{self, EvalOptions};
//! use bone_age::{plot, Checkpoint, Config, PhantomSpec, TrainOptions};
//!
//! # fn main() -> bone_age::Result<()> {
//! // Data: a synthetic hand set with known ages (or the RSNA set, see `download`).
//! let config = Config::load(Some(Path::new("configs/demo.toml")))?;
//! let data = Path::new("data/phantom");
//! bone_age::phantom::write_dataset(data, &PhantomSpec::default())?;
//!
//! // Train: one checkpoint set per epoch in the run directory.
//! let run = bone_age::train(&config, data, Path::new("runs/demo"), &TrainOptions::default(),
//!     |epoch| println!("{epoch}"))?;
//!
//! // Load the best epoch and score it on the labelled test split.
//! let model = Checkpoint::load(&run.best, tch::Device::Cpu)?;
//! let (set, test) = evaluate::test_frame(&config, data)?;
//! let scores = evaluate::evaluate(&model, &test, &config.paths.cache_dir(), &EvalOptions::default())?;
//! println!("{set}: MAE {:.1} months", scores.mae_months.unwrap_or(f64::NAN));
//!
//! // Plot predicted against true bone age.
//! let scatter = plot::PredictionScatter { predictions: scores.predictions.clone() };
//! plot::save(&scatter, Path::new("scatter.png"), None)?;
//! # Ok(())
//! # }
//! ```

// Foundations: errors, files, progress bars, the libtorch runtime.
pub mod doctor;
pub mod error;
pub mod files;
pub mod progress;
pub mod runtime;

// The config tree: one section per stage below, composed.
pub mod config;

// 1. Data: download, the phantom set, annotation frames, summaries, train/validation folds.
pub mod dataset;
pub mod download;
pub mod folds;
pub mod phantom;
pub mod summary;

// 2. Preprocessing (`[preprocess]`), once per image, and its cache.
pub mod cache;
pub mod preprocess;

// 3. Batches (`[loader]`) with GPU-side augmentation (`[augment]`).
pub mod augment;
pub mod loader;

// 4. The model (`[model]`), its checkpoints, and its uncertainty: the recalibration and
//    residual interval a checkpoint carries, an ensemble's interval and its coverage.
pub mod calibration;
pub mod checkpoint;
pub mod interval;
pub mod model;

// 5. Training (`[train]`): schedule, optimiser, one epoch, its record, the run directory.
pub mod commit;
pub mod ema;
pub mod epoch;
pub mod metrics;
pub mod optim;
pub mod run;
pub mod schedule;
pub mod tensorboard;
pub mod train;

// 6. Inference: scoring a labelled set, reading single radiographs; ensembles (K-fold
//    training, calibration on the folds, the 95% interval); explanation maps.
pub mod ensemble;
pub mod evaluate;
pub mod explain;
pub mod predict;

// 7. The clinical readout (`[readout]`): bone age against chronological age and the
//    Greulich–Pyle reference.
pub mod readout;

// 8. Figures, for files and notebooks; the HTML report and batch visits that use them.
pub mod plot;
pub mod report;

// Speed measurements against the Python peer.
pub mod bench;

pub use augment::AugmentConfig;
pub use cache::ImageCache;
pub use checkpoint::Checkpoint;
pub use config::Config;
pub use dataset::{Dataset, Layout, Split};
pub use doctor::Doctor;
pub use ensemble::Ensemble;
pub use error::{Error, Result};
pub use folds::{FoldMethod, FoldsConfig, SexFilter};
pub use loader::{Batch, BatchLoader, LoaderConfig};
pub use model::{ModelConfig, Target, M46};
pub use phantom::PhantomSpec;
pub use preprocess::{Normalize, Preprocess};
pub use runtime::DeviceSpec;
pub use schedule::{Schedule, TrainConfig};
pub use train::{train, TrainOptions};
// Notebooks take tch and polars from here, so one `:dep bone-age` line pins the matching versions.
pub use polars;
pub use tch;
