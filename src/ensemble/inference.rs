//! An ensemble at inference: one radiograph through every member (the image decoded and
//! preprocessed once per distinct preprocessing), and a labelled set scored by every
//! member, then combined: the mean, each member's value, the spread, and the 95% interval.
use std::collections::HashMap;
use std::path::Path;

use polars::prelude::DataFrame;

use super::Ensemble;
use crate::error::{Error, Result};
use crate::evaluate::{EvalOptions, Evaluation, MemberScore, Prediction, Scores};
use crate::model::Target;
use crate::predict::{self, MemberPasses, Radiograph, Reading};

/// A radiograph as each member sees it: one [`Radiograph`] per distinct preprocessing.
#[derive(Clone, Debug)]
pub struct Views {
    pub views: Vec<Radiograph>,
    /// For each member, the index of its view.
    pub of_member: Vec<usize>,
}

impl Views {
    /// The first member's view (the image, the input view, the DICOM header).
    pub fn primary(&self) -> &Radiograph {
        &self.views[0]
    }
}

impl Ensemble {
    /// Decodes `path` and runs each member's preprocessing on it (once per distinct one).
    pub fn load_radiograph(&self, path: &Path) -> Result<Views> {
        let mut seen: Vec<(crate::preprocess::Preprocess, usize)> = Vec::new();
        let (mut views, mut of_member) = (Vec::new(), Vec::new());
        for m in &self.members {
            let pre = m.checkpoint.preprocess()?;
            match seen.iter().find(|(p, _)| *p == pre) {
                Some(&(_, i)) => of_member.push(i),
                None => {
                    views.push(Radiograph::load(&m.checkpoint, path)?);
                    seen.push((pre, views.len() - 1));
                    of_member.push(views.len() - 1);
                }
            }
        }
        Ok(Views { views, of_member })
    }

    /// Reads loaded views: every member's plain pass and `tta` augmented ones, combined
    /// ([`predict::combine`]) with the ensemble's calibrated residuals when it has them.
    pub fn read(&self, views: &Views, male: Option<bool>, tta: usize) -> Result<Reading> {
        let members = self
            .members
            .iter()
            .zip(&views.of_member)
            .map(|(m, &v)| {
                let ckpt = &m.checkpoint;
                Ok(MemberPasses {
                    name: m.name.clone(),
                    values: predict::passes(ckpt, &views.views[v], male, tta)?,
                    interval: ckpt
                        .meta
                        .interval_for(ckpt.meta.calibration.is_some())
                        .copied(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut reading = predict::combine(
            views.primary(),
            self.first(),
            &members,
            self.residuals(),
            tta,
        );
        reading.warnings.extend(self.warnings.iter().cloned());
        Ok(reading)
    }

    /// The members' mean explanation map of loaded views ([`crate::explain::mean_of`]).
    pub fn explain(
        &self,
        views: &Views,
        male: Option<bool>,
        cfg: &crate::explain::ExplainConfig,
    ) -> Result<crate::explain::Explanation> {
        let maps = self
            .members
            .iter()
            .zip(&views.of_member)
            .map(|(m, &v)| predict::explain(&m.checkpoint, &views.views[v], male, cfg))
            .collect::<Result<Vec<_>>>()?;
        crate::explain::mean_of(maps, cfg.top)
    }

    /// Decodes and reads one radiograph file.
    pub fn predict_file(&self, path: &Path, male: Option<bool>, tta: usize) -> Result<Reading> {
        self.read(&self.load_radiograph(path)?, male, tta)
    }
}

/// Scores `ensemble` on `frame`: each member through [`crate::evaluate::evaluate`], then
/// per image the members' mean, spread and the 95% interval (CV+ with a calibration,
/// else the envelope of the members' own), each member's MAE on the same images, and
/// how often the intervals held. One member: its own evaluation.
pub fn evaluate(
    ensemble: &Ensemble,
    frame: &DataFrame,
    cache_dir: &Path,
    options: &EvalOptions,
) -> Result<Evaluation> {
    let mut evals = ensemble
        .members
        .iter()
        .map(|m| crate::evaluate::evaluate(&m.checkpoint, frame, cache_dir, options))
        .collect::<Result<Vec<_>>>()?;
    if evals.len() == 1 {
        return Ok(evals.remove(0));
    }
    // The images every member could read (an unreadable image is left out by each).
    let by_id: Vec<HashMap<i64, &Prediction>> = evals
        .iter()
        .map(|e| e.predictions.iter().map(|p| (p.id, p)).collect())
        .collect();
    let target = ensemble.target();
    let residuals = ensemble.residuals();
    let mut predictions = Vec::new();
    for p in &evals[0].predictions {
        let each: Option<Vec<&Prediction>> = by_id.iter().map(|m| m.get(&p.id).copied()).collect();
        let Some(each) = each else { continue };
        let means: Vec<f64> = each.iter().map(|q| q.predicted).collect();
        let interval = match (&residuals, target) {
            (_, Target::Sex) => None,
            (Some((r, _)), Target::Age) => {
                let passes: Vec<&[f64]> = each.iter().map(|q| q.passes.as_slice()).collect();
                super::cv_plus(&passes, r, super::LEVEL)
            }
            (None, Target::Age) => {
                let ends: Option<Vec<[f64; 2]>> = each.iter().map(|q| q.interval).collect();
                ends.map(|e| predict::envelope(&e))
            }
        };
        predictions.push(Prediction {
            id: p.id,
            male: p.male,
            boneage: p.boneage,
            predicted: means.iter().sum::<f64>() / means.len() as f64,
            interval,
            spread: predict::sd(&means),
            members: means,
            passes: Vec::new(),
        });
    }
    let dropped = evals[0].predictions.len() - predictions.len();
    if predictions.is_empty() {
        return Err(Error::Invalid {
            what: "ensemble evaluation".into(),
            message: "no image was read by every member".into(),
        });
    }
    if dropped > 0 {
        tracing::warn!("{dropped} image(s) were not read by every member and are left out");
    }
    let kept: std::collections::HashSet<i64> = predictions.iter().map(|p| p.id).collect();
    let members: Vec<MemberScore> = evals
        .iter()
        .zip(&ensemble.members)
        .map(|(e, m)| {
            let kept_ones = e.predictions.iter().filter(|p| kept.contains(&p.id));
            let s = Scores::of(kept_ones, target);
            MemberScore {
                name: m.name.clone(),
                checkpoint: m.checkpoint.path.clone(),
                mae_months: s.mae_months,
                median_abs_error_months: s.median_abs_error_months,
                accuracy: s.accuracy,
            }
        })
        .collect();
    let spreads: Vec<f64> = predictions.iter().filter_map(|p| p.spread).collect();
    let root = ensemble.root.clone();
    let root = root.unwrap_or_else(|| evals[0].checkpoint.clone());
    let source = match &residuals {
        Some((_, source)) => source.clone(),
        None => {
            "the envelope of the members' validation residual intervals (no ensemble calibration)"
                .into()
        }
    };
    Ok(Evaluation {
        members,
        mean_spread: (!spreads.is_empty())
            .then(|| spreads.iter().sum::<f64>() / spreads.len() as f64),
        ..Evaluation::of(root, predictions, target, options.tta, source)
    })
}
