//! One serde config tree with defaults.
//!
//! Precedence is defaults < `--config file.toml` < flags. The library never sees
//! clap: binaries turn flags into [`Config::set`] calls (`"runtime.device"`,
//! `"cuda:0"`), which go through the same typed deserialisation as the file,
//! so a bad flag is reported exactly like a bad file entry. Every run writes its
//! resolved config with [`Config::save`].
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::dataset::Layout;
use crate::error::{Error, Result};
use crate::folds::{FoldMethod, SexFilter};
use crate::loader::LoaderConfig;
use crate::model::ModelConfig;
use crate::runtime::DeviceSpec;
use crate::train::TrainConfig;
use crate::transforms::Preprocess;

/// The whole configuration. `Default` is the recipe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub runtime: RuntimeConfig,
    pub paths: PathsConfig,
    pub data: DataConfig,
    pub split: SplitConfig,
    pub preprocess: Preprocess,
    pub augment: AugmentConfig,
    pub loader: LoaderConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
}

/// Which dataset layout to read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// `recipe` or `kaggle`; unset = detected from the files present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
}

/// The train/validation split. `Default` is the recipe: fold 10 of 10 held out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    /// Held-out fold, 1-based.
    pub test_fold: usize,
    pub n_folds: usize,
    /// Rows taken part (before splitting): all, male or female.
    pub sex: SexFilter,
    /// `contiguous` (the recipe) or `stratified` (by age, seeded with runtime.seed).
    pub method: FoldMethod,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            test_fold: 10,
            n_folds: 10,
            sex: SexFilter::All,
            method: FoldMethod::Contiguous,
        }
    }
}

/// Where and how computation runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `auto` (CUDA when libtorch sees a GPU, else CPU), `cpu`, `cuda` or `cuda:N`.
    pub device: DeviceSpec,
    /// libtorch intra-op threads; 0 keeps libtorch's default (one per core).
    pub threads: usize,
    /// Seed for every random choice (splits, initialisation, augmentation).
    pub seed: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            device: DeviceSpec::Auto,
            threads: 0,
            seed: 42,
        }
    }
}

/// Directories. Relative paths are relative to the working directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PathsConfig {
    /// Dataset root (recipe or Kaggle layout).
    pub data_dir: PathBuf,
    /// Parent of run directories (checkpoints, metrics, resolved config).
    pub runs_dir: PathBuf,
    /// Heavy derived state (preprocessed-image caches). Unset: `$BONE_AGE_CACHE`,
    /// else `${XDG_CACHE_HOME:-~/.cache}/bone-age`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
}

impl Default for PathsConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            runs_dir: PathBuf::from("runs"),
            cache_dir: None,
        }
    }
}

impl PathsConfig {
    /// The cache directory in force: the configured one, else the environment's.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(default_cache_dir)
    }
}

/// `$BONE_AGE_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/bone-age` (as scripts/env.sh).
pub fn default_cache_dir() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("BONE_AGE_CACHE").unwrap_or_else(|| {
        var("XDG_CACHE_HOME")
            .or_else(|| var("HOME").map(|h| h.join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"))
            .join("bone-age")
    })
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
        // Parsed alone first, so unknown keys and bad types are named against the file.
        Self::from_toml(&text, path)?;
        let over: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| file_err(e.to_string()))?;
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
        let bad = |key: &str, message: String| {
            Err(Error::ConfigKey {
                key: key.into(),
                message,
            })
        };
        let t = &self.train;
        if t.epochs == 0 {
            return bad("train.epochs", "0: train at least 1 epoch".into());
        }
        for (key, v) in [
            ("train.lr", t.lr),
            ("train.step_gamma", t.step_gamma),
            ("train.head_lr_scale", t.head_lr_scale),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(key, format!("{v} must be a positive, finite number"));
            }
        }
        for (key, v) in [
            ("train.min_lr", t.min_lr),
            ("train.weight_decay", t.weight_decay),
            ("train.warmup_epochs", t.warmup_epochs),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(key, format!("{v} must be a finite number >= 0"));
            }
        }
        if t.min_lr > t.lr {
            return bad(
                "train.min_lr",
                format!("{} is above train.lr = {}", t.min_lr, t.lr),
            );
        }
        if t.warmup_epochs > t.epochs as f64 {
            return bad(
                "train.warmup_epochs",
                format!(
                    "{} is more than train.epochs = {}",
                    t.warmup_epochs, t.epochs
                ),
            );
        }
        if let Some(b) = t.betas.iter().find(|b| !(0.0..1.0).contains(*b)) {
            return bad("train.betas", format!("{b} must be in [0, 1)"));
        }
        if t.step_every == 0 {
            return bad("train.step_every", "0 must be >= 1".into());
        }
        t.lr_at(1, 0.0)?;
        if self.loader.batch_size == 0 {
            return bad("loader.batch_size", "0 must be >= 1".into());
        }
        let s = &self.split;
        if s.n_folds < 2 || !(1..=s.n_folds).contains(&s.test_fold) {
            return bad(
                "split.test_fold",
                format!(
                    "fold {} of {}: need n_folds >= 2 and 1 <= test_fold <= n_folds",
                    s.test_fold, s.n_folds
                ),
            );
        }
        self.augment.validate()?;
        self.preprocess.validate()
    }

    /// Parses TOML text; `origin` names it in errors. Missing keys keep defaults,
    /// unknown keys are errors (a typo must not silently fall back to a default).
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::ConfigFile {
            path: origin.to_path_buf(),
            message: e.to_string(),
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

    /// The resolved config as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises to TOML")
    }

    /// Writes the resolved config (atomically: temp file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::checkpoint::atomic(path, |tmp| {
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
    use super::*;

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
            ("train.min_lr", "-1e-5", "train.min_lr"),
            ("train.epochs", "0", "train.epochs"),
            ("train.betas", "[0.5, 1.5]", "train.betas"),
            ("loader.batch_size", "0", "loader.batch_size"),
            ("split.test_fold", "11", "split.test_fold"),
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
