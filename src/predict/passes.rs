//! A model's passes over one radiograph (the plain view, then test-time augmented ones),
//! and one reading from one or several models' passes: the mean of the members' means,
//! each member's value, their spread, the passes' spread, and the 95% interval (CV+ with
//! an ensemble's calibrated residuals; else the members' own validation intervals).
use tch::{Kind, Tensor};

use super::{Radiograph, Reading};
use crate::augment;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::model::{Target, AGE_RANGE_MONTHS};
use crate::readout::MemberValue;

/// One model's values for one radiograph: the plain pass, then `tta` augmented passes,
/// each in months (recalibrated when the checkpoint carries a calibration) or as P(male).
pub fn passes(
    ckpt: &Checkpoint,
    radiograph: &Radiograph,
    male: Option<bool>,
    tta: usize,
) -> Result<Vec<f64>> {
    if ckpt.model.config.sex_input && male.is_none() {
        return Err(Error::Invalid {
            what: "prediction".into(),
            message: "this model takes sex as an input: pass --sex M or --sex F".into(),
        });
    }
    let device = ckpt.vs.device();
    let (w, h) = radiograph.input.dimensions();
    let out = [h as usize, w as usize];
    let mut views = vec![augment::input_tensor(&radiograph.input, device)]; // [1, 1, H, W]
    if tta > 0 {
        // Seeded like evaluation's passes, so a reading is reproducible.
        let mut rng = rand::SeedableRng::seed_from_u64(ckpt.meta.config.runtime.seed);
        let cached = augment::image_tensor(&radiograph.cached, device);
        for _ in 0..tta {
            let p = ckpt.meta.config.augment.sample(&mut rng);
            views.push(augment::standardize(&augment::augment(&cached, out, &[p])));
        }
    }
    let x = Tensor::cat(&views, 0); // [1 + tta, 1, H, W]
    let m = augment::male_tensor(male, views.len(), device);
    let y = ckpt.model.predict(&x, Some(&m)).to_kind(Kind::Double);
    let y = Vec::<f64>::try_from(y.flatten(0, -1).to_device(tch::Device::Cpu))?;
    if let Some(bad) = y.iter().find(|v| !v.is_finite()) {
        return Err(Error::Checkpoint {
            path: ckpt.path.clone(),
            message: format!(
                "the network's output for {} is {bad}: the weights are broken",
                radiograph.path.display()
            ),
        });
    }
    let (target, calibration) = (ckpt.model.config.target, ckpt.meta.calibration);
    Ok(y.into_iter()
        .map(|y| crate::calibration::in_units(target, calibration, y))
        .collect())
}

/// One member's passes for a radiograph, and its own validation interval (if stored).
#[derive(Clone, Debug)]
pub struct MemberPasses {
    pub name: String,
    pub values: Vec<f64>,
    pub interval: Option<crate::calibration::ResidualInterval>,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The sample standard deviation (`None` for fewer than two values).
pub fn sd(v: &[f64]) -> Option<f64> {
    (v.len() > 1).then(|| {
        let m = mean(v);
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    })
}

/// The 1.96-SD half-width that test-time augmentation's spread adds, in quadrature, to
/// each end of a member's own validation interval.
const Z95: f64 = 1.959_964;

/// One member's own interval around its passes' mean: its validation residual interval,
/// each end widened in quadrature by 1.96 × the passes' SD when there are several.
pub fn member_interval(m: &MemberPasses) -> Option<[f64; 2]> {
    let iv = m.interval?;
    let (centre, w) = (mean(&m.values), Z95 * sd(&m.values).unwrap_or(0.0));
    let widen = |q: f64| q.hypot(w) - q.abs();
    Some([
        centre + iv.low - widen(iv.low),
        centre + iv.high + widen(iv.high),
    ])
}

/// The smallest interval holding every one of `intervals` (members' own, no calibration).
pub fn envelope(intervals: &[[f64; 2]]) -> [f64; 2] {
    [
        intervals
            .iter()
            .map(|iv| iv[0])
            .fold(f64::INFINITY, f64::min),
        intervals
            .iter()
            .map(|iv| iv[1])
            .fold(f64::NEG_INFINITY, f64::max),
    ]
}

/// A reading from one or several members' passes: the mean of the members' means, each
/// member's value, their spread, the passes' spread, and the 95% interval. With
/// `residuals` (an ensemble calibrated on its folds, one list per member) the interval is
/// CV+ ([`crate::interval::cv_plus`]); otherwise the envelope of the members'
/// own validation intervals.
pub fn combine(
    radiograph: &Radiograph,
    first: &Checkpoint,
    members: &[MemberPasses],
    residuals: Option<(&[Vec<f64>], String)>,
    tta: usize,
) -> Reading {
    let target = first.model.config.target;
    let values: Vec<f64> = members.iter().map(|m| mean(&m.values)).collect();
    let raw = mean(&values);
    let (lo, hi) = AGE_RANGE_MONTHS;
    let value = match target {
        Target::Age => raw.clamp(lo, hi),
        Target::Sex => raw,
    };
    let clamp = |[a, b]: [f64; 2]| [a.clamp(lo, hi), b.clamp(lo, hi)];
    let (interval, interval_source) = match (target, residuals) {
        (Target::Sex, _) => (None, "none: a sex model".to_string()),
        (Target::Age, Some((r, source))) => {
            let passes: Vec<&[f64]> = members.iter().map(|m| m.values.as_slice()).collect();
            let iv = crate::interval::cv_plus(&passes, r, crate::interval::LEVEL);
            (iv.map(clamp), source)
        }
        (Target::Age, None) => {
            let each: Option<Vec<[f64; 2]>> = members.iter().map(member_interval).collect();
            match each {
                Some(each) if members.len() == 1 => (
                    Some(clamp(each[0])),
                    format!(
                        "validation residuals, {} images{}",
                        members[0].interval.map_or(0, |iv| iv.n),
                        if tta > 0 {
                            ", widened by the TTA passes' spread"
                        } else {
                            ""
                        }
                    ),
                ),
                Some(each) => (
                    Some(clamp(envelope(&each))),
                    "the envelope of the members' validation residual intervals (no \
                     ensemble calibration: `bone-age ensemble calibrate`)"
                        .to_string(),
                ),
                None => (
                    None,
                    format!(
                        "unknown: {} sidecar holds no validation residuals (trained before \
                         they were stored, or without a validation fold)",
                        if members.len() == 1 {
                            "this checkpoint's"
                        } else {
                            "a member's"
                        }
                    ),
                ),
            }
        }
    };
    let is_ensemble = members.len() > 1;
    let mut reading = Reading {
        path: radiograph.path.clone(),
        target,
        value,
        raw,
        calibrated: target == Target::Age && first.meta.calibration.is_some(),
        clamped: value != raw,
        warnings: radiograph.warnings.clone(),
        dicom: radiograph.dicom.clone(),
        interval,
        interval_source,
        members: if is_ensemble {
            members
                .iter()
                .zip(&values)
                .map(|(m, &value)| MemberValue {
                    name: m.name.clone(),
                    value,
                })
                .collect()
        } else {
            Vec::new()
        },
        spread: if is_ensemble { sd(&values) } else { None },
        tta,
        tta_spread: (tta > 0).then(|| {
            mean(
                &members
                    .iter()
                    .map(|m| sd(&m.values).unwrap_or(0.0))
                    .collect::<Vec<_>>(),
            )
        }),
    };
    if reading.clamped {
        reading.warnings.push(format!(
            "the network's output {raw:.1} months is outside the {lo}–{hi} months it was trained on; \
             reported as {value:.0}: check the image"
        ));
    }
    reading
}
