//! Checkpoints: weights as safetensors plus a JSON sidecar (resolved config, epoch,
//! metrics, input shape, model, versions), every file written atomically.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Device};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::M46;
use crate::transforms::Preprocess;

/// Writes `path` through `write(tmp)` then renames, so a kill never leaves a torn file.
/// The temporary name keeps the extension (tch picks the format from it).
/// A failed write removes its temporary; one a kill leaves behind is removed by
/// [`crate::commit::recover`] when the run directory is next opened.
pub fn atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".tmp-{}-{name}", std::process::id()));
    if let Err(e) =
        write(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)))
    {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
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
    /// When the epoch ended, seconds since the Unix epoch (TensorBoard's wall time).
    #[serde(default)]
    pub wall_time: f64,
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

/// Writes the weights of `vs` to `path` (safetensors).
pub fn write_weights(vs: &nn::VarStore, path: &Path) -> Result<()> {
    vs.save(path).map_err(Error::from)
}

/// Writes a sidecar to `path`.
pub fn write_meta(meta: &CheckpointMeta, path: &Path) -> Result<()> {
    let json = serde_json::to_vec_pretty(meta).expect("metadata serialises");
    std::fs::write(path, json).map_err(|e| Error::io(path, e))
}

/// Reads and checks a sidecar: the network takes one grey channel of at least 127×127.
pub fn read_meta(weights: &Path) -> Result<CheckpointMeta> {
    let path = sidecar(weights);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let meta: CheckpointMeta = serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let [c, h, w] = meta.input_shape;
    if c != 1 || h < 127 || w < 127 {
        return Err(Error::Checkpoint {
            path,
            message: format!(
                "input_shape [{c}, {h}, {w}] is not one a bone-age model takes: radiographs are \
                 1 grey channel of at least 127×127"
            ),
        });
    }
    Ok(meta)
}

/// Loads `weights` into `vs`: every variable must be in the file with its exact shape
/// (libtorch's own copy would broadcast a [32, 1, 3, 3] kernel into [32, 3, 3, 3]).
pub fn load_weights(vs: &mut nn::VarStore, weights: &Path) -> Result<()> {
    let bad = |message: String| Error::Checkpoint {
        path: weights.to_path_buf(),
        message,
    };
    let file: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(weights)
            .map_err(|e| {
                bad(format!(
                    "not readable weights: {}",
                    crate::error::torch_message(&e)
                ))
            })?
            .into_iter()
            .collect();
    let mut problems = Vec::new();
    let mut vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let want = vars[name].size();
        match file.get(name) {
            None => problems.push(format!("`{name}` is missing")),
            Some(t) if t.size() != want => problems.push(format!(
                "`{name}` is {:?} in the file, the model needs {want:?}",
                t.size()
            )),
            Some(_) => {}
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(5);
        return Err(bad(format!(
            "weights do not fit the model its sidecar describes ({n} problem(s)): {}",
            problems.join("; ")
        )));
    }
    tch::no_grad(|| -> Result<()> {
        for (name, var) in vars.iter_mut() {
            let src = file[name].to_device(var.device()).to_kind(var.kind());
            var.f_copy_(&src)?;
        }
        Ok(())
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
        load_weights(&mut vs, weights)?;
        Ok(Checkpoint {
            vs,
            model,
            meta,
            path: weights.to_path_buf(),
        })
    }
}

impl Checkpoint {
    /// The preprocessing that brings a radiograph of any size to this network's input;
    /// see [`inference_preprocess`].
    pub fn preprocess(&self) -> Result<Preprocess> {
        inference_preprocess(&self.meta, &self.path)
    }
}

/// The training preprocessing, made to end at the network's input size for every image:
/// a whole-image model gets `stretch` to the size of its training images (recovered from
/// the input size and the scale), so a 2044×1514 original is not judged by a 128×128
/// patch. A crop or `fit` already ends at a fixed size, which must be the input size.
pub fn inference_preprocess(meta: &CheckpointMeta, path: &Path) -> Result<Preprocess> {
    let mut p = meta.config.preprocess.clone();
    let want = [meta.input_shape[1] as usize, meta.input_shape[2] as usize];
    if p.fixed_geometry().is_none() {
        let guess = want.map(|v| (v as f64 / p.scale).round() as i64);
        let mut offsets: Vec<(i64, i64)> = (-2..=2)
            .flat_map(|a| (-2..=2).map(move |b| (a, b)))
            .collect();
        offsets.sort_by_key(|(a, b)| a.abs() + b.abs());
        p.stretch = offsets
            .into_iter()
            .map(|(a, b)| [guess[0] + a, guess[1] + b])
            .filter(|hw| hw[0] > 0 && hw[1] > 0)
            .map(|hw| [hw[0] as u32, hw[1] as u32])
            .find(|hw| p.geometry(*hw).out == want);
    }
    match p.fixed_geometry() {
        Some(g) if g.out == want => Ok(p),
        got => Err(Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "its preprocessing ends at {:?}, but its network takes {want:?} (H, W): \
                 the sidecar does not describe these weights",
                got.map(|g| g.out)
            ),
        }),
    }
}
