//! Checkpoints: weights as safetensors plus a JSON sidecar (resolved config, epoch,
//! metrics, input shape, model, versions), and loading them back for inference.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Device};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::EpochMetrics;
use crate::model::M46;
use crate::preprocess::Preprocess;

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
    /// The linear recalibration fitted on the validation fold for these weights
    /// (`train.calibrate`); absent in older sidecars and uncalibrated runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::calibration::Calibration>,
    /// The 95% interval of the validation errors of these weights' predictions as
    /// `predict` reports them (recalibrated when `calibration` is set); absent in older
    /// sidecars and sex models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<crate::calibration::ResidualInterval>,
    /// The same for the network's own output, when it differs (a recalibrated run read
    /// with `--no-calibration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_interval: Option<crate::calibration::ResidualInterval>,
}

impl CheckpointMeta {
    /// The interval for predictions made with (`calibrated`) or without the recalibration.
    pub fn interval_for(&self, calibrated: bool) -> Option<&crate::calibration::ResidualInterval> {
        if calibrated || self.calibration.is_none() {
            self.interval.as_ref()
        } else {
            self.raw_interval.as_ref()
        }
    }
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
    let bad = |e: serde_json::Error| Error::Checkpoint {
        path: path.clone(),
        message: e.to_string(),
    };
    // Sidecars of older versions hold the config in its old form (see `upgrade_legacy`).
    let mut tree: serde_json::Value = serde_json::from_str(&text).map_err(bad)?;
    let meta: CheckpointMeta = match tree.get_mut("config").map(crate::config::upgrade_legacy) {
        Some(true) => serde_json::from_value(tree).map_err(bad)?,
        _ => serde_json::from_str(&text).map_err(bad)?,
    };
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

/// Which checkpoint of a run directory `evaluate` and `predict` load when given the
/// directory: the first of these that exists. docs/results.md has the evidence.
pub const DEFAULT_CHOICE: [&str; 3] = ["ema.safetensors", "best.safetensors", "last.safetensors"];

/// `path` itself when it is a file; in a run directory, its default checkpoint
/// ([`DEFAULT_CHOICE`]).
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    DEFAULT_CHOICE
        .iter()
        .map(|name| path.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!(
                "a directory without a checkpoint (looked for {})",
                DEFAULT_CHOICE.join(", ")
            ),
        })
}

impl Checkpoint {
    /// Loads `weights` (or a run directory's default checkpoint, see [`resolve`]) and
    /// its sidecar onto `device`.
    pub fn load(weights: &Path, device: Device) -> Result<Checkpoint> {
        let weights = &resolve(weights)?;
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
    /// The same architecture with freshly initialised weights (libtorch seeded with
    /// `seed`); preprocessing, calibration and sidecar kept. The model randomisation of
    /// the explanation maps' sanity checks.
    pub fn reinitialized(&self, seed: i64) -> Result<Checkpoint> {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(self.vs.device());
        let model = M46::new(&vs.root(), self.meta.input_shape, self.model.config.clone())?;
        Ok(Checkpoint {
            vs,
            model,
            meta: self.meta.clone(),
            path: self.path.with_extension("reinitialized"),
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    #[test]
    fn a_sidecar_of_an_older_version_reads_in_the_new_form() {
        let meta = CheckpointMeta {
            config: Config::default(),
            epoch: 3,
            metrics: EpochMetrics::default(),
            best_val_loss: 0.2,
            input_shape: [1, 128, 128],
            versions: Versions::current(),
            calibration: None,
            interval: None,
            raw_interval: None,
        };
        let mut tree = serde_json::to_value(&meta).unwrap();
        let config = tree["config"].as_object_mut().unwrap();
        config.remove("folds");
        config.insert(
            "split".into(),
            serde_json::json!({"test_fold": 3, "n_folds": 4, "sex": "all", "method": "contiguous"}),
        );
        let train = config["train"].as_object_mut().unwrap();
        train.insert("schedule".into(), "cosine".into());
        train.insert("min_lr".into(), 1e-5.into());
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("best.safetensors");
        std::fs::write(sidecar(&weights), tree.to_string()).unwrap();
        let read = read_meta(&weights).unwrap();
        assert_eq!(
            (read.config.folds.val_fold, read.config.folds.n_folds),
            (3, 4)
        );
        assert_eq!(
            read.config.train.schedule,
            Schedule::Cosine { min_lr: 1e-5 }
        );
        assert_eq!(read.epoch, 3);

        tree["config"]["train"]["schedule"] = "warp".into();
        std::fs::write(sidecar(&weights), tree.to_string()).unwrap();
        let msg = read_meta(&weights).unwrap_err().to_string();
        assert!(msg.contains("best.json") && msg.contains("warp"), "{msg}");
    }
}
