//! Scoring a checkpoint on a labelled set (MAE and median absolute error in months, or
//! accuracy for the sex model; optional test-time augmentation; how often its 95%
//! interval holds), through the checkpoint's own preprocessing (see
//! [`Checkpoint::preprocess`]). Ensembles are scored by [`crate::ensemble::evaluate`],
//! single radiographs read by [`crate::predict`].
use std::path::{Path, PathBuf};

use polars::prelude::DataFrame;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::augment;
use crate::cache::ImageCache;
use crate::checkpoint::Checkpoint;
use crate::dataset;
use crate::error::{Error, Result};
use crate::loader::{BatchLoader, LoaderConfig};
use crate::model::Target;

mod predictions;

pub use predictions::{read_predictions, write_predictions};

/// One image's prediction.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub id: i64,
    pub male: bool,
    /// True bone age in months, when labelled.
    pub boneage: Option<f64>,
    /// Predicted bone age in months (age model) or P(male) (sex model): the mean of the
    /// passes (and of the members, for an ensemble).
    pub predicted: f64,
    /// The 95% interval for the bone age, months.
    pub interval: Option<[f64; 2]>,
    /// Ensembles: the standard deviation of the members' predictions.
    pub spread: Option<f64>,
    /// Ensembles: each member's prediction, in member order.
    pub members: Vec<f64>,
    /// The plain pass, then each TTA pass (one model's; empty for an ensemble).
    #[serde(skip)]
    pub passes: Vec<f64>,
}

impl Prediction {
    /// A plain prediction: no interval, no members, no passes.
    pub fn new(id: i64, male: bool, boneage: Option<f64>, predicted: f64) -> Prediction {
        Prediction {
            id,
            male,
            boneage,
            predicted,
            interval: None,
            spread: None,
            members: Vec::new(),
            passes: Vec::new(),
        }
    }
}

/// The metrics `bone-age evaluate` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub checkpoint: PathBuf,
    /// What was scored, e.g. "held-out fold 5 of 5" (set by the caller).
    pub set: String,
    pub images: usize,
    pub target: Target,
    pub mae_months: Option<f64>,
    pub median_abs_error_months: Option<f64>,
    pub accuracy: Option<f64>,
    /// Augmented passes averaged with the plain one (0 = none).
    pub tta: usize,
    /// The linear recalibration from the checkpoint's sidecar applied to every age
    /// prediction (`None`: uncalibrated, or turned off).
    pub calibration: Option<crate::calibration::Calibration>,
    /// Age predictions outside 0–228 months (left as they are in the metrics).
    pub out_of_range: usize,
    /// The central 95% of `truth − prediction` over the labelled age predictions: the
    /// interval `predict` puts around a bone age (`evaluate --store-interval` keeps it).
    pub interval: Option<crate::calibration::ResidualInterval>,
    /// How often the model's own 95% intervals (below) held on this set.
    pub coverage: Option<crate::interval::Coverage>,
    /// How the per-image intervals were made.
    pub interval_source: String,
    /// Ensembles: each member scored alone on the same images.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberScore>,
    /// Ensembles: the mean of the per-image spread (SD of the members), months.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_spread: Option<f64>,
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
}

/// One ensemble member's score on the images the ensemble was scored on.
#[derive(Clone, Debug, Serialize)]
pub struct MemberScore {
    pub name: String,
    pub checkpoint: PathBuf,
    pub mae_months: Option<f64>,
    pub median_abs_error_months: Option<f64>,
    pub accuracy: Option<f64>,
}

impl std::fmt::Display for Evaluation {
    /// The table `bone-age evaluate` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "checkpoint        {}", self.checkpoint.display())?;
        if !self.set.is_empty() {
            writeln!(f, "set               {}", self.set)?;
        }
        write!(f, "images            {}", self.images)?;
        if self.tta > 0 {
            write!(f, " (TTA: {} augmented passes)", self.tta)?;
        }
        if let Some(c) = self.calibration {
            write!(
                f,
                "\ncalibration       {:.3} × prediction {:+.1} months (fitted on the validation fold)",
                c.slope, c.intercept
            )?;
        }
        if let (Some(mae), Some(med)) = (self.mae_months, self.median_abs_error_months) {
            write!(f, "\nMAE               {mae:.2} months")?;
            write!(f, "\nmedian abs error  {med:.2} months")?;
        }
        for m in &self.members {
            match (m.mae_months, m.accuracy) {
                (Some(mae), _) => write!(f, "\n  {:<16}MAE {mae:.2} months", m.name)?,
                (None, Some(acc)) => write!(f, "\n  {:<16}accuracy {:.1}%", m.name, acc * 100.0)?,
                _ => {}
            }
        }
        if let Some(s) = self.mean_spread {
            write!(f, "\nmember spread     {s:.2} (mean SD across members)")?;
        }
        if let Some(iv) = self.interval {
            write!(
                f,
                "\n95% of errors     truth − prediction within {:+.1} to {:+.1} months",
                iv.low, iv.high
            )?;
        }
        if let Some(c) = &self.coverage {
            write!(
                f,
                "\ncoverage          {:.1}% of true ages inside the model's 95% intervals \
                 (mean width {:.1} months; {})\n{c}",
                c.coverage * 100.0,
                c.mean_width_months,
                self.interval_source
            )?;
        }
        if let Some(acc) = self.accuracy {
            write!(f, "\naccuracy          {:.1}%", acc * 100.0)?;
        }
        if self.out_of_range > 0 {
            write!(
                f,
                "\nwarning           {} prediction(s) outside 0–228 months",
                self.out_of_range
            )?;
        }
        Ok(())
    }
}

/// The rows to report test metrics on, and what they are: the labelled test split of
/// `data_dir` when it has one, else (no test split, or an unlabelled one such as the
/// Kaggle copy's) the held-out validation fold of its training split under `config`.
pub fn test_frame(config: &crate::Config, data_dir: &Path) -> Result<(String, DataFrame)> {
    let test = dataset::Split::Test;
    let layout = match config.data.layout {
        Some(l) => Some(l).filter(|l| l.paths(data_dir, test).0.is_file()),
        None => dataset::Layout::detect(data_dir, test).ok(),
    };
    if let Some(layout) = layout {
        let (_, ds) = dataset::Dataset::from_dir(data_dir, test, Some(layout))?;
        if ds.is_labelled() {
            return Ok((format!("test split ({})", ds.csv.display()), ds.frame));
        }
    }
    let f = &config.folds;
    let (_, val) = config.fold_frames(data_dir)?;
    Ok((
        format!("held-out fold {} of {}", f.val_fold, f.n_folds),
        val,
    ))
}

/// How [`evaluate`] runs. `Default`: no test-time augmentation, batches of 32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalOptions {
    /// Augmented passes averaged with the plain one (0 = none).
    pub tta: usize,
    /// Images per forward pass (memory, not results).
    pub batch_size: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            tta: 0,
            batch_size: 32,
        }
    }
}

/// Predicts every row of `frame` (cached under `cache_dir`), averaging `options.tta`
/// augmented passes with the plain one.
pub fn evaluate(
    ckpt: &Checkpoint,
    frame: &DataFrame,
    cache_dir: &Path,
    options: &EvalOptions,
) -> Result<Evaluation> {
    let EvalOptions { tta, batch_size } = *options;
    let cfg = &ckpt.meta.config;
    let device = ckpt.vs.device();
    let target = ckpt.model.config.target;
    let labels = check_labels(frame, target)?;
    let cache = ImageCache::open(frame, &ckpt.preprocess()?, cache_dir)?;
    let loader_cfg = LoaderConfig {
        batch_size,
        drop_last: false,
        ..cfg.loader.clone()
    };
    let loader = BatchLoader::new(
        &cache,
        frame,
        target,
        loader_cfg,
        None,
        device,
        cfg.runtime.seed,
    )?;
    let mut rng = StdRng::seed_from_u64(cfg.runtime.seed);
    let row_of: std::collections::HashMap<i64, usize> = cache
        .ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    let (mut outputs, mut ids) = (
        Vec::with_capacity(loader.len()),
        Vec::with_capacity(loader.len()),
    );
    let to_vec = |t: Tensor| -> Result<Vec<f64>> {
        let t = t.to_kind(Kind::Double).to_device(Device::Cpu);
        Ok(Vec::<f64>::try_from(t.flatten(0, -1))?)
    };
    for batch in loader.epoch(0) {
        ids.extend(batch.ids.iter().map(|id| (row_of[id], *id)));
        let plain = ckpt.model.predict(&batch.images, Some(&batch.male)); // [N, 1]
        let mut passes: Vec<Vec<f64>> = to_vec(plain)?.into_iter().map(|v| vec![v]).collect();
        if tta > 0 {
            let rows = Tensor::from_slice(
                &batch
                    .ids
                    .iter()
                    .map(|id| row_of[id] as i64)
                    .collect::<Vec<_>>(),
            );
            let raw = augment::on(device, cache.images.index_select(0, &rows));
            for _ in 0..tta {
                let params: Vec<_> = batch
                    .ids
                    .iter()
                    .map(|_| cfg.augment.sample(&mut rng))
                    .collect();
                let x = augment::standardize(&augment::augment(&raw, cache.geometry.out, &params));
                let y = to_vec(ckpt.model.predict(&x, Some(&batch.male)))?;
                passes.iter_mut().zip(y).for_each(|(p, v)| p.push(v));
            }
        }
        outputs.extend(passes);
    }
    if let Some(bad) = outputs
        .iter()
        .position(|v| v.iter().any(|v| !v.is_finite()))
    {
        return Err(Error::Checkpoint {
            path: ckpt.path.clone(),
            message: format!(
                "the network's output for image {} is {:?}: the weights are broken",
                ids[bad].1, outputs[bad]
            ),
        });
    }
    let males = dataset::males(frame)?;
    let ages = labels;
    let calibration = ckpt.meta.calibration.filter(|_| target == Target::Age);
    let months = |out: f64| crate::calibration::in_units(Target::Age, calibration, out);
    let interval = ckpt.meta.interval_for(calibration.is_some()).copied();
    let predictions: Vec<Prediction> = ids
        .iter()
        .zip(outputs)
        .map(|(&(row, id), out)| {
            let passes: Vec<f64> = match target {
                Target::Age => out.into_iter().map(months).collect(),
                Target::Sex => out,
            };
            let member = crate::predict::MemberPasses {
                name: String::new(),
                values: passes.clone(),
                interval,
            };
            Prediction {
                id,
                male: males[row],
                boneage: ages.as_ref().map(|a| a[row]),
                predicted: passes.iter().sum::<f64>() / passes.len() as f64,
                interval: crate::predict::member_interval(&member)
                    .filter(|_| target == Target::Age),
                spread: None,
                members: Vec::new(),
                passes,
            }
        })
        .collect();
    let interval_source = match interval {
        Some(iv) => format!("validation residuals, {} images", iv.n),
        None => "none stored in the checkpoint's sidecar".into(),
    };
    Ok(Evaluation {
        calibration,
        ..Evaluation::of(ckpt.path.clone(), predictions, target, tta, interval_source)
    })
}

impl Evaluation {
    /// Scores `predictions` made by `checkpoint`: the metrics, the central 95% of the
    /// errors and the coverage of the per-image intervals. The caller adds the rest: the
    /// set's name, a recalibration, an ensemble's members and spread.
    pub fn of(
        checkpoint: PathBuf,
        predictions: Vec<Prediction>,
        target: Target,
        tta: usize,
        interval_source: String,
    ) -> Self {
        let scores = Scores::of(predictions.iter(), target);
        Evaluation {
            checkpoint,
            set: String::new(),
            images: predictions.len(),
            target,
            mae_months: scores.mae_months,
            median_abs_error_months: scores.median_abs_error_months,
            accuracy: scores.accuracy,
            tta,
            calibration: None,
            out_of_range: scores.out_of_range,
            interval: interval_of(&predictions, None).filter(|_| target == Target::Age),
            coverage: coverage_of(&predictions),
            interval_source,
            members: Vec::new(),
            mean_spread: None,
            predictions,
        }
    }
}

/// What a set of predictions scores: MAE and median absolute error in months (age), or
/// accuracy (sex), and the age predictions outside 0–228 months.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Scores {
    pub mae_months: Option<f64>,
    pub median_abs_error_months: Option<f64>,
    pub accuracy: Option<f64>,
    pub out_of_range: usize,
}

impl Scores {
    pub fn of<'a>(predictions: impl Iterator<Item = &'a Prediction>, target: Target) -> Scores {
        let predictions: Vec<&Prediction> = predictions.collect();
        let abs: Vec<f64> = predictions
            .iter()
            .filter_map(|p| p.boneage.map(|a| (p.predicted - a).abs()))
            .collect();
        let errors = crate::summary::AgeStats::of(&abs).filter(|_| target == Target::Age);
        let (lo, hi) = crate::predict::AGE_RANGE_MONTHS;
        let n = predictions.len().max(1) as f64;
        let count = |f: &dyn Fn(&Prediction) -> bool| predictions.iter().filter(|p| f(p)).count();
        Scores {
            mae_months: errors.as_ref().map(|s| s.mean),
            median_abs_error_months: errors.as_ref().map(|s| s.median),
            accuracy: (target == Target::Sex)
                .then(|| count(&|p| (p.predicted >= 0.5) == p.male) as f64 / n),
            out_of_range: match target {
                Target::Age => count(&|p| !(lo..=hi).contains(&p.predicted)),
                Target::Sex => 0,
            },
        }
    }
}

/// How often the labelled `predictions`' intervals held (`None` without any).
pub fn coverage_of(predictions: &[Prediction]) -> Option<crate::interval::Coverage> {
    let rows: Vec<(f64, f64, [f64; 2])> = predictions
        .iter()
        .filter_map(|p| Some((p.boneage?, p.predicted, p.interval?)))
        .collect();
    crate::interval::Coverage::of(&rows)
}

/// The 95% residual interval of labelled `predictions`, with `undo`'s recalibration
/// taken back out first when given (the network's own output).
pub fn interval_of(
    predictions: &[Prediction],
    undo: Option<&crate::calibration::Calibration>,
) -> Option<crate::calibration::ResidualInterval> {
    let (pred, truth): (Vec<f64>, Vec<f64>) = predictions
        .iter()
        .filter_map(|p| {
            let raw = match undo {
                Some(c) if c.slope.abs() > 1e-9 => (p.predicted - c.intercept) / c.slope,
                Some(_) => return None,
                None => p.predicted,
            };
            Some((raw, p.boneage?))
        })
        .unzip();
    crate::calibration::ResidualInterval::fit(&pred, &truth, 0.95)
}

/// The bone ages of `frame`: required (and finite) for an age model, optional for a sex model.
fn check_labels(frame: &DataFrame, target: Target) -> Result<Option<Vec<f64>>> {
    if !dataset::is_labelled(frame) {
        return match target {
            Target::Sex => Ok(None),
            Target::Age => Err(Error::Invalid {
                what: "evaluation set".into(),
                message: "it has no bone ages (`boneage` column), so there is nothing to score \
                          against; `bone-age predict` reads unlabelled radiographs"
                    .into(),
            }),
        };
    }
    let ages = dataset::ages(frame)?;
    if let Some(i) = ages.iter().position(|a| !a.is_finite()) {
        return Err(Error::Invalid {
            what: "evaluation set".into(),
            message: format!("image {} has bone age {}", dataset::ids(frame)?[i], ages[i]),
        });
    }
    Ok(Some(ages))
}
