//! Calibrating a K-fold run on its folds: each member predicts the fold it held out, so
//! the out-of-fold (OOF) predictions cover the training set once. Their errors are
//! stored in `RUN/ensemble.json` (with each member's weights' SHA-256, so a retrained
//! fold is noticed) for the readings' CV+ interval, and `RUN/oof.csv` holds one row per
//! image. How often the interval holds is measured honestly: each fold's images get the
//! interval made from the *other* folds' errors, and the coverage of those is reported
//! overall and by age band.
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::{kfold, Ensemble, Member};
use crate::error::{Error, Result};
use crate::evaluate::{EvalOptions, Prediction};
use crate::interval::{residual_quantiles, Coverage, LEVEL};

/// The calibration file of a K-fold run.
pub const ENSEMBLE_JSON: &str = "ensemble.json";
/// One row per training image: its fold, truth, out-of-fold prediction and interval.
pub const OOF_CSV: &str = "oof.csv";

/// Which weights a calibration was made for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub name: String,
    /// Relative to the run directory.
    pub weights: PathBuf,
    pub sha256: String,
    pub epoch: usize,
    /// Images in its held-out fold.
    pub images: usize,
}

/// `RUN/ensemble.json`: the out-of-fold errors of every member and what they showed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EnsembleCalibration {
    pub level: f64,
    /// Augmented passes the OOF predictions averaged (0 = none).
    pub tta: usize,
    pub members: Vec<MemberRecord>,
    /// Per member: truth − prediction (months, after the member's recalibration) on its fold.
    pub residuals: Vec<Vec<f64>>,
    /// The same for the networks' own outputs (`--no-calibration`).
    pub raw_residuals: Vec<Vec<f64>>,
    /// OOF images, their MAE and median absolute error (months), one member each.
    pub oof_images: usize,
    pub oof_mae_months: f64,
    pub oof_median_abs_error_months: f64,
    /// Each fold's images inside the interval made from the other folds' errors.
    pub coverage: Coverage,
    /// Training images no member predicted (unreadable ones, left out of every cache).
    pub missing: usize,
    pub bone_age_version: String,
}

fn sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(format!("{:x}", sha2::Sha256::digest(&bytes)))
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl EnsembleCalibration {
    pub fn read(path: &Path) -> Result<EnsembleCalibration> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: format!("not an ensemble calibration: {e}"),
        })
    }

    /// Whether this calibration was made for `members` (same names and weights).
    pub fn matches(&self, root: &Path, members: &[Member]) -> std::result::Result<(), String> {
        if self.members.len() != members.len() || self.residuals.len() != members.len() {
            return Err(format!(
                "calibrated for {} members, the run has {}",
                self.members.len(),
                members.len()
            ));
        }
        for (r, m) in self.members.iter().zip(members) {
            let here = super::relative(root, &m.checkpoint.path);
            if r.name != m.name || r.weights != here {
                return Err(format!(
                    "calibrated for {} ({}), the run has {} ({})",
                    r.name,
                    r.weights.display(),
                    m.name,
                    here.display()
                ));
            }
            if sha256(&m.checkpoint.path).map_err(|e| e.to_string())? != r.sha256 {
                return Err(format!(
                    "{}'s weights changed since it was calibrated",
                    m.name
                ));
            }
        }
        Ok(())
    }

    /// Use the raw residuals (the members' recalibration turned off).
    pub fn use_raw(&mut self) {
        self.residuals = self.raw_residuals.clone();
    }
}

/// Calibrates the K-fold run in `root` on `data_dir`'s training split: each member
/// predicts its held-out fold (`options.tta` augmented passes too), the errors and the
/// cross-fitted coverage go to `RUN/ensemble.json`, the rows to `RUN/oof.csv`.
pub fn calibrate(
    root: &Path,
    data_dir: &Path,
    cache_dir: &Path,
    device: tch::Device,
    options: &EvalOptions,
) -> Result<EnsembleCalibration> {
    let folds = kfold::fold_dirs(root);
    let bad = |message: String| Error::Invalid {
        what: format!("K-fold run {}", root.display()),
        message,
    };
    if folds.len() < 2 {
        return Err(bad(format!(
            "it holds {} fold director{} (fold-1 … fold-K); train one with `bone-age train --folds K`",
            folds.len(),
            if folds.len() == 1 { "y" } else { "ies" }
        )));
    }
    let ensemble = Ensemble::load(&[root.to_path_buf()], device)?;
    let k_total = folds.len();
    let first = &ensemble.first().meta.config.folds;
    for (m, (k, dir)) in ensemble.members.iter().zip(&folds) {
        let c = &m.checkpoint.meta.config;
        if c.folds.n_folds != k_total || c.folds.val_fold != *k {
            return Err(bad(format!(
                "{} holds out fold {} of {}, but the run has {k_total} fold directories: each \
                 fold-k must hold out fold k of K",
                dir.display(),
                c.folds.val_fold,
                c.folds.n_folds
            )));
        }
        if (c.folds.method, c.folds.sex) != (first.method, first.sex)
            || c.runtime.seed != ensemble.first().meta.config.runtime.seed
        {
            return Err(bad(format!(
                "{} and {} deal their folds differently (method, sex filter or seed), so \
                 their held-out folds do not partition the data",
                ensemble.members[0].name, m.name
            )));
        }
        if !kfold::is_finished(dir, c.train.epochs) {
            return Err(bad(format!(
                "{} has not finished its {} epochs; finish it first (`bone-age train --folds \
                 {k_total} --fold {k} --out {} --resume`)",
                m.name,
                c.train.epochs,
                root.display()
            )));
        }
    }
    let mut rows: Vec<(usize, Prediction, f64)> = Vec::new(); // (member, prediction, raw)
    let mut members = Vec::new();
    let (mut residuals, mut raw_residuals) = (Vec::new(), Vec::new());
    let bar = crate::progress::bar(ensemble.len() as u64, "out-of-fold");
    for (i, m) in ensemble.members.iter().enumerate() {
        let ckpt = &m.checkpoint;
        bar.set_message(format!("out-of-fold {}", m.name));
        let (_, held_out) = ckpt.meta.config.fold_frames(data_dir)?;
        let eval = crate::evaluate::evaluate(ckpt, &held_out, cache_dir, options)?;
        let undo = |p: f64| ckpt.meta.calibration.map_or(p, |c| c.invert(p));
        let (mut r, mut raw) = (Vec::new(), Vec::new());
        for p in eval.predictions {
            let truth = p
                .boneage
                .ok_or_else(|| bad("a held-out image has no bone age".into()))?;
            let raw_pred = undo(p.predicted);
            r.push(round3(truth - p.predicted));
            raw.push(round3(truth - raw_pred));
            rows.push((i, p, raw_pred));
        }
        members.push(MemberRecord {
            name: m.name.clone(),
            weights: super::relative(root, &ckpt.path),
            sha256: sha256(&ckpt.path)?,
            epoch: ckpt.meta.epoch,
            images: r.len(),
        });
        residuals.push(r);
        raw_residuals.push(raw);
        bar.inc(1);
    }
    bar.finish_and_clear();
    // The held-out folds must partition the training split: every image once.
    let c = &ensemble.first().meta.config;
    let (_, ds) = crate::dataset::Dataset::from_dir(data_dir, crate::Split::Train, c.data.layout)?;
    let all = crate::folds::filter_sex(&ds.frame, c.folds.sex)?;
    let all: HashSet<i64> = crate::dataset::ids(&all)?.into_iter().collect();
    let mut seen = HashSet::new();
    for (_, p, _) in &rows {
        if !seen.insert(p.id) || !all.contains(&p.id) {
            return Err(bad(format!(
                "image {} is in two held-out folds, or not in {}'s training split: the folds \
                 were dealt from other data",
                p.id,
                data_dir.display()
            )));
        }
    }
    let missing = all.len() - seen.len();
    if missing > 0 {
        tracing::warn!("{missing} training image(s) were not predicted (unreadable)");
    }
    // Cross-fitted: each fold's interval from the other folds' errors.
    let others: Vec<Option<[f64; 2]>> = (0..members.len())
        .map(|i| {
            let pooled: Vec<f64> = residuals
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, r)| r.iter().copied())
                .collect();
            residual_quantiles(&pooled, LEVEL)
        })
        .collect();
    let triples: Vec<(f64, f64, [f64; 2])> = rows
        .iter()
        .filter_map(|(i, p, _)| {
            let [lo, hi] = others[*i]?;
            Some((
                p.boneage?,
                p.predicted,
                [p.predicted + lo, p.predicted + hi],
            ))
        })
        .collect();
    let coverage = Coverage::of(&triples).ok_or_else(|| bad("no out-of-fold prediction".into()))?;
    let abs: Vec<f64> = triples.iter().map(|(t, p, _)| (t - p).abs()).collect();
    let stats = crate::summary::AgeStats::of(&abs).ok_or_else(|| bad("no errors".into()))?;
    let calibration = EnsembleCalibration {
        level: LEVEL,
        tta: options.tta,
        members,
        residuals,
        raw_residuals,
        oof_images: rows.len(),
        oof_mae_months: stats.mean,
        oof_median_abs_error_months: stats.median,
        coverage,
        missing,
        bone_age_version: env!("CARGO_PKG_VERSION").into(),
    };
    write_oof(&root.join(OOF_CSV), &calibration, &rows, &others)?;
    let json = serde_json::to_vec_pretty(&calibration).expect("calibration serialises");
    crate::files::atomic_write(&root.join(ENSEMBLE_JSON), |tmp| {
        std::fs::write(tmp, &json).map_err(|e| Error::io(tmp, e))
    })?;
    Ok(calibration)
}

/// `id,male,boneage,fold,predicted,raw_predicted,residual,low,high,covered`.
fn write_oof(
    path: &Path,
    c: &EnsembleCalibration,
    rows: &[(usize, Prediction, f64)],
    others: &[Option<[f64; 2]>],
) -> Result<()> {
    crate::files::atomic_write(path, |tmp| {
        let io = |e| Error::io(tmp, e);
        let mut f = std::io::BufWriter::new(std::fs::File::create(tmp).map_err(io)?);
        writeln!(
            f,
            "id,male,boneage,fold,predicted,raw_predicted,residual,low,high,covered"
        )
        .map_err(io)?;
        for (i, p, raw) in rows {
            let truth = p.boneage.unwrap_or(f64::NAN);
            let (lo, hi, covered) =
                others[*i].map_or((String::new(), String::new(), String::new()), |[a, b]| {
                    let (lo, hi) = (p.predicted + a, p.predicted + b);
                    (
                        format!("{lo:.3}"),
                        format!("{hi:.3}"),
                        (lo..=hi).contains(&truth).to_string(),
                    )
                });
            writeln!(
                f,
                "{},{},{truth},{},{:.3},{raw:.3},{:.3},{lo},{hi},{covered}",
                p.id,
                p.male,
                c.members[*i].name.trim_start_matches(kfold::FOLD_PREFIX),
                p.predicted,
                truth - p.predicted
            )
            .map_err(io)?;
        }
        f.flush().map_err(io)
    })
}
