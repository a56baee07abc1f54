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

/// Builds a directory with `build(staging)` beside `path`, then swaps it in for `path`,
/// so a re-run replaces an earlier output whole or not at all. An existing `path` is only
/// replaced when it is empty or holds `marker` (an earlier output of the same kind):
/// anything else there is the user's and is refused before any work.
pub fn replace_dir(
    path: &Path,
    marker: &str,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    if path.exists() {
        let empty = std::fs::read_dir(path)
            .map_err(|e| Error::io(path, e))?
            .next()
            .is_none();
        if !empty && !path.join(marker).is_file() {
            return Err(Error::Invalid {
                what: "output directory".into(),
                message: format!(
                    "{} exists and holds no {marker}: it is not an earlier output, so it is left alone; \
                     choose another directory",
                    path.display()
                ),
            });
        }
    }
    let staging = temporary(path);
    let old = path.with_file_name(format!(
        ".old-{}-{}",
        std::process::id(),
        path.file_name().and_then(|n| n.to_str()).unwrap_or("dir")
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    if let Err(e) = build(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    if path.exists() {
        std::fs::rename(path, &old).map_err(|e| Error::io(path, e))?;
    }
    if let Err(e) = std::fs::rename(&staging, path) {
        let _ = std::fs::rename(&old, path);
        return Err(Error::io(path, e));
    }
    let _ = std::fs::remove_dir_all(&old);
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

    #[test]
    fn a_directory_is_replaced_whole_and_only_when_it_is_ours() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let write = |files: &'static [&'static str]| {
            move |d: &Path| {
                for f in files {
                    std::fs::write(d.join(f), "x").map_err(|e| Error::io(d, e))?;
                }
                Ok(())
            }
        };
        replace_dir(&out, "readings.csv", write(&["readings.csv", "a.png"])).unwrap();
        replace_dir(&out, "readings.csv", write(&["readings.csv", "b.png"])).unwrap();
        assert!(out.join("b.png").exists() && !out.join("a.png").exists());
        // A failed build leaves the earlier output as it was, and no staging directory.
        let err = replace_dir(&out, "readings.csv", |d| {
            std::fs::write(d.join("readings.csv"), "half").unwrap();
            Err(Error::io(d, std::io::Error::other("disk full")))
        });
        assert!(err.is_err() && out.join("b.png").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Someone else's directory is refused.
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::write(theirs.join("thesis.tex"), "x").unwrap();
        let e = replace_dir(&theirs, "readings.csv", write(&["readings.csv"])).unwrap_err();
        assert!(e.to_string().contains("left alone"), "{e}");
        assert!(theirs.join("thesis.tex").exists());
    }
}
