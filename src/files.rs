//! The file system: the configured directories (`[paths]`) and the one atomic-write
//! helper every output goes through (configs, caches, figures, predictions).
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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

/// The temporary name [`atomic_write`] writes `path` under: hidden, per process (two
/// runs sharing a directory may write the same file at once), extension kept (tch
/// picks the format from it).
pub fn temporary(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".tmp-{}-{name}", std::process::id()))
}

/// Writes `path` through `write(tmp)` then renames, so a kill never leaves a torn file.
/// A failed write (a full disk) removes its temporary; one a kill leaves behind is
/// removed by [`crate::commit::recover`] when a run directory is next opened.
pub fn atomic_write(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temporary(path);
    if let Err(e) =
        write(&tmp).and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)))
    {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_neither_file_nor_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        std::fs::write(&path, "old").unwrap();
        let err = atomic_write(&path, |tmp| {
            std::fs::write(tmp, "half").unwrap();
            Err(Error::io(tmp, std::io::Error::other("disk full")))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        atomic_write(&path, |tmp| {
            std::fs::write(tmp, "new").map_err(|e| Error::io(tmp, e))
        })
        .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
    }
}
