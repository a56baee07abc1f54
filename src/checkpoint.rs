//! Checkpoints: weights as safetensors plus a JSON sidecar (resolved config, epoch,
//! metrics, input shape, model, versions), every file written atomically.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Device};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::M46;

/// Writes `path` through `write(tmp)` then renames, so a kill never leaves a torn file.
/// The temporary name keeps the extension (tch picks the format from it).
pub fn atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".tmp-{}-{name}", std::process::id()));
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Metrics of one epoch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Age models: validation mean absolute error in months.
    pub val_mae_months: Option<f64>,
    /// Sex models: validation accuracy.
    pub val_accuracy: Option<f64>,
    pub lr: f64,
    pub seconds: f64,
    /// Training images per second.
    pub images_per_s: f64,
}

impl std::fmt::Display for EpochMetrics {
    /// One line per epoch, as `bone-age train` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let score = match (self.val_mae_months, self.val_accuracy) {
            (Some(mae), _) => format!("val MAE {mae:6.2} months"),
            (_, Some(acc)) => format!("val accuracy {:5.1}%", acc * 100.0),
            _ => String::new(),
        };
        write!(
            f,
            "epoch {:>3}  train loss {:.4}  val loss {:.4}  {score}  {:.1} s  {:.1} img/s",
            self.epoch, self.train_loss, self.val_loss, self.seconds, self.images_per_s
        )
    }
}

/// The JSON sidecar beside each `*.safetensors`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub config: Config,
    pub epoch: usize,
    pub metrics: EpochMetrics,
    pub best_val_loss: f64,
    /// [C, H, W].
    pub input_shape: [i64; 3],
    pub versions: Versions,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Versions {
    pub bone_age: String,
    pub tch: String,
    pub torch: Option<String>,
}

impl Versions {
    pub fn current() -> Self {
        Self {
            bone_age: env!("CARGO_PKG_VERSION").into(),
            tch: crate::runtime::TCH_VERSION.into(),
            torch: crate::runtime::loaded_libtorch_dir()
                .as_deref()
                .and_then(crate::runtime::torch_version_of),
        }
    }
}

/// The sidecar of a weights file: `best.safetensors` → `best.json`.
pub fn sidecar(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// Saves weights and sidecar (each atomically; the sidecar last, so it only ever
/// describes complete weights).
pub fn save(vs: &nn::VarStore, weights: &Path, meta: &CheckpointMeta) -> Result<()> {
    atomic(weights, |tmp| vs.save(tmp).map_err(Error::from))?;
    let json = serde_json::to_vec_pretty(meta).expect("metadata serialises");
    atomic(&sidecar(weights), |tmp| {
        std::fs::write(tmp, &json).map_err(|e| Error::io(tmp, e))
    })
}

/// Reads a sidecar.
pub fn read_meta(weights: &Path) -> Result<CheckpointMeta> {
    let path = sidecar(weights);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
        path,
        message: e.to_string(),
    })
}

/// A trained model ready for inference.
#[derive(Debug)]
pub struct Checkpoint {
    pub vs: nn::VarStore,
    pub model: M46,
    pub meta: CheckpointMeta,
    pub path: PathBuf,
}

impl Checkpoint {
    /// Loads `weights` and its sidecar onto `device`.
    pub fn load(weights: &Path, device: Device) -> Result<Checkpoint> {
        if !weights.is_file() {
            return Err(Error::Checkpoint {
                path: weights.to_path_buf(),
                message: "not found; train a model first (`make demo`, `make training` or \
                          notebooks/demo.ipynb) or pass the path of a run's best.safetensors"
                    .into(),
            });
        }
        let meta = read_meta(weights)?;
        let mut vs = nn::VarStore::new(device);
        let model = M46::new(&vs.root(), meta.input_shape, meta.config.model.clone())?;
        vs.load(weights).map_err(|e| Error::Checkpoint {
            path: weights.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Checkpoint {
            vs,
            model,
            meta,
            path: weights.to_path_buf(),
        })
    }
}
