//! K-fold training: one ordinary run directory per fold (`RUN/fold-1` … `RUN/fold-K`),
//! fold k holding out fold k of K for validation. Each fold trains, resumes and fails
//! like any run, so folds can also be trained one at a time as independent jobs
//! ([`train_folds`] with `only`), and [`super::calibrate`] then reads them as one ensemble.
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::EpochMetrics;
use crate::train::{TrainOptions, TrainSummary};

/// Fold directories are `fold-1` … `fold-K`.
pub const FOLD_PREFIX: &str = "fold-";

/// `root/fold-k`.
pub fn fold_dir(root: &Path, k: usize) -> PathBuf {
    root.join(format!("{FOLD_PREFIX}{k}"))
}

/// The fold directories under `root`, as (k, path) sorted by k; empty when `root` is not a
/// K-fold run.
pub fn fold_dirs(root: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dirs: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let k = name.strip_prefix(FOLD_PREFIX)?.parse::<usize>().ok()?;
            Some((k, e.path()))
        })
        .collect();
    dirs.sort();
    dirs
}

/// Checks `folds` (K) and `only` (one fold k of them): K ≥ 2 and 1 ≤ k ≤ K.
pub fn check_folds(folds: usize, only: Option<usize>) -> Result<()> {
    if folds < 2 {
        return Err(Error::Invalid {
            what: "folds".into(),
            message: format!("--folds {folds}: an ensemble needs at least 2 folds"),
        });
    }
    if let Some(k) = only.filter(|k| !(1..=folds).contains(k)) {
        return Err(Error::Invalid {
            what: "fold".into(),
            message: format!("--fold {k} is outside 1..{folds} (--folds {folds})"),
        });
    }
    Ok(())
}

/// `base` with fold `k` of `folds` held out for validation.
pub fn fold_config(base: &Config, folds: usize, k: usize) -> Result<Config> {
    check_folds(folds, Some(k))?;
    let mut c = base.clone();
    c.folds.n_folds = folds;
    c.folds.val_fold = k;
    c.validate()?;
    Ok(c)
}

/// Whether the run in `dir` has finished `epochs` epochs.
pub fn is_finished(dir: &Path, epochs: usize) -> bool {
    crate::checkpoint::read_meta(&dir.join(crate::run::LAST)).is_ok_and(|m| m.epoch >= epochs)
}

/// Trains every fold of a `folds`-fold run into `root` (or only fold `only`), each with
/// [`crate::train`], calling `on_epoch(k, metrics)` after each epoch. With
/// `options.resume`, finished folds are skipped and an interrupted one continues; without
/// it, a fold directory that already holds a run is an error, as for any run.
pub fn train_folds(
    config: &Config,
    data_dir: &Path,
    root: &Path,
    folds: usize,
    only: Option<usize>,
    options: &TrainOptions,
    mut on_epoch: impl FnMut(usize, &EpochMetrics),
) -> Result<Vec<(usize, TrainSummary)>> {
    check_folds(folds, only)?;
    let which: Vec<usize> = match only {
        Some(k) => vec![k],
        None => (1..=folds).collect(),
    };
    let mut done = Vec::new();
    for k in which {
        let c = fold_config(config, folds, k)?;
        let dir = fold_dir(root, k);
        if options.resume && is_finished(&dir, c.train.epochs) {
            tracing::info!(fold = k, "already finished; skipped");
            continue;
        }
        let summary = crate::train(&c, data_dir, &dir, options, |m| on_epoch(k, m))?;
        done.push((k, summary));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_outside_the_range_are_errors() {
        for (k, folds, needle) in [
            (Some(4), 3, "--fold 4 is outside 1..3"),
            (Some(0), 3, "--fold 0 is outside 1..3"),
            (None, 1, "at least 2 folds"),
        ] {
            let msg = check_folds(folds, k).unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg}");
        }
        check_folds(3, Some(3)).unwrap();
        let c = fold_config(&Config::default(), 3, 2).unwrap();
        assert_eq!((c.folds.n_folds, c.folds.val_fold), (3, 2));
    }

    #[test]
    fn fold_directories_are_found_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["fold-10", "fold-2", "fold-1", "fold-x", "other"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("fold-3"), "a file, not a fold").unwrap();
        let ks: Vec<usize> = fold_dirs(dir.path()).into_iter().map(|(k, _)| k).collect();
        assert_eq!(ks, vec![1, 2, 10]);
        assert!(fold_dirs(&dir.path().join("missing")).is_empty());
    }
}
