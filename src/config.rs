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
        match file {
            None => Ok(Self::default()),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                Self::from_toml(&text, path)
            }
        }
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
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, self.to_toml()).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
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
    fn missing_file_names_the_path() {
        let msg = Config::load(Some(Path::new("/nonexistent/cfg.toml")))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/nonexistent/cfg.toml"), "{msg}");
    }
}
