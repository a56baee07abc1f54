//! One serde config tree with defaults.
//!
//! Precedence is defaults < `--config file.toml` < flags. The library never sees
//! clap: binaries turn flags into [`Config::set`] calls (`"runtime.device"`,
//! `"cuda:0"`), which go through the same typed deserialisation as the file,
//! so a bad flag is reported exactly like a bad file entry. Every run writes its
//! resolved config with [`Config::save`].
use std::path::Path;

use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::dataset::DataConfig;
use crate::error::{Error, Result};
use crate::explain::ExplainConfig;
use crate::files::PathsConfig;
use crate::folds::FoldsConfig;
use crate::loader::LoaderConfig;
use crate::model::{ModelConfig, Target};
use crate::preprocess::Preprocess;
use crate::readout::ReadoutConfig;
use crate::runtime::RuntimeConfig;
use crate::schedule::TrainConfig;

/// The whole configuration, one section per stage, in pipeline order. Each section's
/// type lives in its stage's module; this file only composes them. `Default` is the recipe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub runtime: RuntimeConfig,
    pub paths: PathsConfig,
    pub data: DataConfig,
    pub folds: FoldsConfig,
    pub preprocess: Preprocess,
    pub augment: AugmentConfig,
    pub loader: LoaderConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub explain: ExplainConfig,
    pub readout: ReadoutConfig,
}

impl Config {
    /// Defaults, overlaid with `file` when given.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        let mut config = Self::default();
        if let Some(path) = file {
            config.overlay_file(path)?;
        }
        Ok(config)
    }

    /// Overlays the keys a TOML file sets, keeping every other value of `self`
    /// (so a file can apply over a saved run's config as well as over the defaults).
    pub fn overlay_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let file_err = |message: String| Error::ConfigFile {
            path: path.to_path_buf(),
            message,
        };
        let mut over: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
        if upgrade_toml(&mut over) {
            warn_upgraded(path);
            Config::deserialize(over.clone()).map_err(|e| file_err(e.to_string()))?;
        } else {
            // Parsed alone first, so unknown keys and bad types are named against the file.
            Self::from_toml(&text, path)?;
        }
        let mut root = toml::Table::try_from(&*self).map_err(|e| file_err(e.to_string()))?;
        merge(&mut root, over);
        *self = root
            .try_into()
            .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
        Ok(())
    }

    /// Checks every value that would otherwise fail late or silently (a negative or NaN
    /// learning rate, zero epochs, an empty batch, an impossible fold); the error names
    /// the key and the value.
    pub fn validate(&self) -> Result<()> {
        self.folds.validate()?;
        self.preprocess.validate()?;
        self.augment.validate()?;
        self.loader.validate()?;
        self.train.validate()?;
        self.explain.validate()?;
        self.readout.validate()
    }

    /// Parses TOML text; `origin` names it in errors. Missing keys keep defaults,
    /// unknown keys are errors (a typo must not silently fall back to a default).
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        let err = |e: toml::de::Error| Error::ConfigFile {
            path: origin.to_path_buf(),
            message: e.to_string(),
        };
        toml::from_str(text).or_else(|first| {
            let mut table: toml::Table = text.parse().map_err(err)?;
            if !upgrade_toml(&mut table) {
                return Err(err(first));
            }
            warn_upgraded(origin);
            Config::deserialize(table).map_err(err)
        })
    }

    /// Sets one dotted key from a command-line string, e.g. `("runtime.seed", "7")`.
    /// The string is read as a TOML value (`7`, `1e-4`, `true`, `[0.5, 0.999]`) and
    /// falls back to a plain string (`cuda:0`, `runs/a`).
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let key_err = |message: String| Error::ConfigKey {
            key: key.to_string(),
            message,
        };
        let mut root = toml::Table::try_from(&*self).map_err(|e| key_err(e.to_string()))?;
        let (parents, leaf) = match key.rsplit_once('.') {
            Some((p, l)) => (p.split('.').collect::<Vec<_>>(), l),
            None => (Vec::new(), key),
        };
        let mut table = &mut root;
        for part in parents {
            table = match table.get_mut(part) {
                Some(toml::Value::Table(t)) => t,
                _ => return Err(key_err(format!("no config section `{part}`"))),
            };
        }
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        table.insert(leaf.to_string(), parsed);
        *self = root.try_into().map_err(|e: toml::de::Error| {
            key_err(format!("cannot take {value:?}: {}", e.message()))
        })?;
        Ok(())
    }

    /// The training and validation frames of `[folds]` over `data_dir`'s train split.
    pub fn fold_frames(&self, data_dir: &Path) -> Result<(DataFrame, DataFrame)> {
        crate::folds::frames(
            data_dir,
            self.data.layout,
            &self.folds,
            self.runtime.seed,
            self.model.target == Target::Age,
        )
    }

    /// The resolved config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises to TOML")
    }

    /// Writes the resolved config (atomically: temp file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::files::atomic_write(path, |tmp| {
            std::fs::write(tmp, self.to_toml()).map_err(|e| Error::io(tmp, e))
        })
    }

    /// The dotted keys whose values differ between `self` and `other`, with both values.
    pub fn diff(&self, other: &Config) -> Vec<(String, String, String)> {
        let flat = |c: &Config| {
            let mut out = std::collections::BTreeMap::new();
            flatten(
                "",
                &toml::Value::Table(toml::Table::try_from(c).expect("config is a table")),
                &mut out,
            );
            out
        };
        let (a, b) = (flat(self), flat(other));
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        keys.into_iter()
            .filter(|k| a.get(*k) != b.get(*k))
            .map(|k| {
                let show = |m: &std::collections::BTreeMap<String, String>| {
                    m.get(k).cloned().unwrap_or_else(|| "(unset)".into())
                };
                (k.clone(), show(&a), show(&b))
            })
            .collect()
    }
}

/// Rewrites a config (as a JSON tree) written before the typed sections: `[split]` with
/// `test_fold` becomes `[folds]` with `val_fold`, and `train.schedule = "cosine"` with flat
/// `min_lr`, `step_every`, `step_gamma` becomes `schedule = { kind = "cosine", .. }`. Old
/// run directories and checkpoints stay readable. Returns whether anything changed.
pub fn upgrade_legacy(root: &mut serde_json::Value) -> bool {
    let Some(root) = root.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    if let Some(mut split) = root.remove("split") {
        if let Some(fold) = split.as_object_mut().and_then(|s| s.remove("test_fold")) {
            split["val_fold"] = fold;
        }
        root.insert("folds".into(), split);
        changed = true;
    }
    let Some(train) = root.get_mut("train").and_then(|t| t.as_object_mut()) else {
        return changed;
    };
    let Some(kind) = train
        .get("schedule")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
    else {
        return changed;
    };
    let mut schedule = serde_json::Map::new();
    schedule.insert("kind".into(), kind.clone().into());
    for (old, new, used) in [
        ("min_lr", "min_lr", kind == "cosine"),
        ("step_every", "every", kind == "step"),
        ("step_gamma", "gamma", kind == "step"),
    ] {
        if let Some(v) = train.remove(old).filter(|_| used) {
            schedule.insert(new.into(), v);
        }
    }
    train.insert("schedule".into(), schedule.into());
    true
}

/// [`upgrade_legacy`] on a TOML table.
fn upgrade_toml(table: &mut toml::Table) -> bool {
    let Ok(mut tree) = serde_json::to_value(&*table) else {
        return false;
    };
    if !upgrade_legacy(&mut tree) {
        return false;
    }
    match toml::Table::deserialize(tree) {
        Ok(t) => {
            *table = t;
            true
        }
        Err(_) => false,
    }
}

fn warn_upgraded(path: &Path) {
    tracing::warn!(
        "{}: read in the old form ([split], a string train.schedule); \
         `bone-age config` prints the current one",
        path.display()
    );
}

/// Merges `over` into `base`, table by table.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut std::collections::BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::runtime::DeviceSpec;
    use crate::schedule::Schedule;

    #[test]
    fn configs_in_the_old_form_are_read_in_the_new() {
        let old = "[split]\ntest_fold = 5\nn_folds = 5\n\
                   [train]\nschedule = \"cosine\"\nmin_lr = 1e-5\nstep_every = 3\n";
        let c = Config::from_toml(old, Path::new("old.toml")).unwrap();
        assert_eq!((c.folds.val_fold, c.folds.n_folds), (5, 5));
        assert_eq!(c.train.schedule, Schedule::Cosine { min_lr: 1e-5 });
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("old.toml");
        std::fs::write(&file, "[train]\nschedule = \"step\"\nstep_gamma = 0.5\n").unwrap();
        let mut c = Config::default();
        c.overlay_file(&file).unwrap();
        assert_eq!(
            c.train.schedule,
            Schedule::Step {
                every: 10,
                gamma: 0.5
            }
        );
        let msg = Config::from_toml("[train]\nschedule = \"warp\"\n", Path::new("w.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("w.toml") && msg.contains("warp"), "{msg}");
    }

    #[test]
    fn defaults_are_the_recipe() {
        let c = Config::default();
        assert_eq!(c.runtime.seed, 42);
        assert_eq!(c.runtime.device, DeviceSpec::Auto);
        assert_eq!(c.paths.data_dir, PathBuf::from("data"));
    }

    #[test]
    fn file_overrides_defaults_and_keeps_the_rest() {
        let c = Config::from_toml("[runtime]\nseed = 7\n", Path::new("x.toml")).unwrap();
        assert_eq!(c.runtime.seed, 7);
        assert_eq!(c.runtime.device, DeviceSpec::Auto);
        assert_eq!(c.paths, PathsConfig::default());
    }

    #[test]
    fn flags_override_file() {
        let mut c = Config::from_toml(
            "[runtime]\nseed = 7\ndevice = \"cuda:1\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        c.set("runtime.device", "cpu").unwrap();
        c.set("paths.cache_dir", "/tmp/c").unwrap();
        assert_eq!(c.runtime.device, DeviceSpec::Cpu);
        assert_eq!(c.runtime.seed, 7);
        assert_eq!(c.paths.cache_dir(), PathBuf::from("/tmp/c"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = Config::from_toml("[runtime]\nsede = 7\n", Path::new("run.toml")).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("run.toml") && msg.contains("sede"), "{msg}");

        let mut c = Config::default();
        let msg = c.set("runtime.seed", "many").unwrap_err().to_string();
        assert!(
            msg.contains("runtime.seed") && msg.contains("many"),
            "{msg}"
        );
        let msg = c.set("runtime.device", "gpu").unwrap_err().to_string();
        assert!(msg.contains("gpu"), "{msg}");
        let msg = c.set("nosuch.key", "1").unwrap_err().to_string();
        assert!(msg.contains("nosuch"), "{msg}");
        assert_eq!(c, Config::default(), "a failed set changes nothing");
    }

    #[test]
    fn save_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.set("runtime.threads", "3").unwrap();
        let path = dir.path().join("config.toml");
        c.save(&path).unwrap();
        assert_eq!(Config::load(Some(&path)).unwrap(), c);
    }

    #[test]
    fn values_that_would_fail_late_are_refused_with_their_key() {
        for (key, value, needle) in [
            ("train.lr", "-1", "train.lr"),
            ("train.lr", "nan", "train.lr"),
            (
                "train.schedule",
                "{ kind = \"cosine\", min_lr = -1e-5 }",
                "train.schedule.min_lr",
            ),
            (
                "train.schedule",
                "{ kind = \"step\", every = 0 }",
                "train.schedule.every",
            ),
            ("train.epochs", "0", "train.epochs"),
            ("train.betas", "[0.5, 1.5]", "train.betas"),
            ("loader.batch_size", "0", "loader.batch_size"),
            ("folds.val_fold", "11", "folds.val_fold"),
            (
                "train.schedule",
                "{ kind = \"cosine\", min_lr = 1 }",
                "train.schedule.min_lr",
            ),
            ("preprocess.scale", "0", "scale"),
            ("augment.rotation_deg", "-5", "augment.rotation_deg"),
            ("augment.gamma", "[1.2, 0.8]", "augment.gamma"),
        ] {
            let mut c = Config::default();
            c.set(key, value).unwrap();
            let msg = c.validate().unwrap_err().to_string();
            assert!(msg.contains(needle), "{key} = {value}: {msg}");
        }
        Config::default().validate().unwrap();
    }

    #[test]
    fn a_file_overlays_a_saved_config_and_diff_names_the_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.toml");
        std::fs::write(&file, "[train]\nepochs = 3\n").unwrap();
        let mut saved = Config::default();
        saved.set("train.lr", "1e-3").unwrap();
        let mut c = saved.clone();
        c.overlay_file(&file).unwrap();
        assert_eq!(
            (c.train.epochs, c.train.lr),
            (3, 1e-3),
            "only the file's keys change"
        );
        assert_eq!(
            saved.diff(&c),
            vec![(
                "train.epochs".to_string(),
                "50".to_string(),
                "3".to_string()
            )]
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let msg = Config::load(Some(Path::new("/nonexistent/cfg.toml")))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/nonexistent/cfg.toml"), "{msg}");
    }
}
