//! bone-age: pediatric bone age assessment from left-hand radiographs, the
//! `ml-recipe-bone-age` m46 recipe (Iglovikov et al., DLMIA 2018) in Rust on tch.
//!
//! One module per stage; this file only declares and re-exports.
pub mod augment;
pub mod bench;
pub mod cache;
pub mod checkpoint;
pub mod commit;
pub mod config;
pub mod dataset;
pub mod download;
pub mod error;
pub mod evaluate;
pub mod folds;
pub mod loader;
pub mod model;
pub mod optim;
pub mod phantom;
pub mod plot;
pub mod predict;
pub mod progress;
pub mod run;
pub mod runtime;
pub mod schedule;
pub mod summary;
pub mod tensorboard;
pub mod train;
pub mod transforms;

pub use augment::AugmentConfig;
pub use cache::ImageCache;
pub use checkpoint::Checkpoint;
pub use config::Config;
pub use dataset::{Dataset, Layout, Split};
pub use error::{Error, Result};
pub use folds::{split, FoldMethod, SexFilter};
pub use loader::{Batch, BatchLoader, LoaderConfig, Target};
pub use model::{ModelConfig, M46};
pub use phantom::PhantomSpec;
pub use runtime::{DeviceSpec, Doctor};
pub use train::{train, TrainConfig, TrainOptions};
pub use transforms::{Normalize, Preprocess};
// Notebooks take tch and polars from here, so one `:dep bone-age` line pins the matching versions.
pub use polars;
pub use tch;
