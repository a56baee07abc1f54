//! Bias correction: a linear recalibration of age predictions against the truth, fitted on
//! the validation fold (as Deeplasia does per model). Short runs regress towards the mean:
//! young hands read older and old hands younger, a slope below 1 that the residual plot
//! shows; `truth ≈ slope · prediction + intercept` undoes it. Stored in the checkpoint's
//! sidecar; `evaluate` and `predict` apply it unless told not to.
//!
//! The same residuals give each checkpoint its own uncertainty: [`ResidualInterval`], the
//! central 95% of `truth − prediction` on the validation fold, which `predict` puts around
//! a bone age.
use serde::{Deserialize, Serialize};

use crate::model::{Target, AGE_CENTER, AGE_SCALE};

/// A network output in its target's units: months for age (de-standardised, then
/// recalibrated by `calibration` when given), P(male) as it is for sex.
pub fn in_units(target: Target, calibration: Option<Calibration>, y: f64) -> f64 {
    match target {
        Target::Age => {
            let months = y * AGE_SCALE + AGE_CENTER;
            calibration.map_or(months, |c| c.apply(months))
        }
        Target::Sex => y,
    }
}

/// `months ↦ slope · months + intercept`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub slope: f64,
    pub intercept: f64,
    /// Images it was fitted on.
    pub n: usize,
}

impl Calibration {
    /// Least squares of `truth` on `pred` (months). `None` for fewer than two images; a
    /// constant prediction gets slope 1 and only the mean offset.
    pub fn fit(pred: &[f64], truth: &[f64]) -> Option<Calibration> {
        let n = pred.len().min(truth.len());
        if n < 2 {
            return None;
        }
        let mean = |v: &[f64]| v[..n].iter().sum::<f64>() / n as f64;
        let (mp, mt) = (mean(pred), mean(truth));
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (p, t) in pred.iter().zip(truth).take(n) {
            sxy += (p - mp) * (t - mt);
            sxx += (p - mp) * (p - mp);
        }
        let slope = if sxx > 1e-9 { sxy / sxx } else { 1.0 };
        let c = Calibration {
            slope,
            intercept: mt - slope * mp,
            n,
        };
        (c.slope.is_finite() && c.intercept.is_finite()).then_some(c)
    }

    /// The recalibrated prediction in months.
    pub fn apply(&self, months: f64) -> f64 {
        self.slope * months + self.intercept
    }

    /// The prediction before [`Calibration::apply`] (as it is for a flat slope).
    pub fn invert(&self, months: f64) -> f64 {
        if self.slope.abs() > 1e-9 {
            (months - self.intercept) / self.slope
        } else {
            months
        }
    }
}

/// The spread of a checkpoint's validation errors: bone age lies within
/// `[prediction + low, prediction + high]` for `level` of the validation images.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidualInterval {
    /// The share of validation images inside, e.g. 0.95.
    pub level: f64,
    /// Quantiles of `truth − prediction` at (1 − level) / 2 and (1 + level) / 2, months.
    pub low: f64,
    pub high: f64,
    /// Images it was taken from.
    pub n: usize,
}

impl ResidualInterval {
    /// Fewer images than this give no interval: its ends would rest on one or two errors.
    pub const MIN_IMAGES: usize = 20;

    /// The empirical quantiles (linear between order statistics) of `truth − pred`.
    pub fn fit(pred: &[f64], truth: &[f64], level: f64) -> Option<ResidualInterval> {
        let mut r: Vec<f64> = pred.iter().zip(truth).map(|(p, t)| t - p).collect();
        if r.len() < Self::MIN_IMAGES
            || !(0.0..1.0).contains(&level)
            || r.iter().any(|x| !x.is_finite())
        {
            return None;
        }
        r.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let x = p * (r.len() - 1) as f64;
            let (i, t) = (x.floor() as usize, x.fract());
            r[i] + t * (r[(i + 1).min(r.len() - 1)] - r[i])
        };
        Some(ResidualInterval {
            level,
            low: q((1.0 - level) / 2.0),
            high: q((1.0 + level) / 2.0),
            n: r.len(),
        })
    }

    /// `[months + low, months + high]`, kept within `range`.
    pub fn around(&self, months: f64, range: (f64, f64)) -> [f64; 2] {
        [
            (months + self.low).clamp(range.0, range.1),
            (months + self.high).clamp(range.0, range.1),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undoes_a_regression_towards_the_mean() {
        // Predictions shrunk halfway towards 120 months plus a +6 month bias.
        let truth: Vec<f64> = (0..50).map(|i| 20.0 + 4.0 * i as f64).collect();
        let pred: Vec<f64> = truth
            .iter()
            .map(|t| 120.0 + 0.5 * (t - 120.0) + 6.0)
            .collect();
        let c = Calibration::fit(&pred, &truth).unwrap();
        assert!((c.slope - 2.0).abs() < 1e-9, "{c:?}");
        for (p, t) in pred.iter().zip(&truth) {
            assert!((c.apply(*p) - t).abs() < 1e-9);
        }
        assert_eq!(c.n, 50);
    }

    #[test]
    fn degenerate_inputs_give_no_fit_or_an_offset() {
        assert_eq!(Calibration::fit(&[100.0], &[90.0]), None);
        let c = Calibration::fit(&[100.0, 100.0], &[90.0, 110.0]).unwrap();
        assert_eq!((c.slope, c.intercept), (1.0, 0.0));
    }

    #[test]
    fn the_interval_holds_the_central_share_of_the_errors() {
        // Errors -50..=49 months: the central 95% runs from about -47.5 to +46.5.
        let truth: Vec<f64> = (0..100).map(|i| 100.0 + (i as f64 - 50.0)).collect();
        let pred = vec![100.0; 100];
        let iv = ResidualInterval::fit(&pred, &truth, 0.95).unwrap();
        assert!(
            (iv.low - -47.525).abs() < 1e-9 && (iv.high - 46.525).abs() < 1e-9,
            "{iv:?}"
        );
        let inside = truth
            .iter()
            .filter(|t| (100.0 + iv.low..=100.0 + iv.high).contains(*t))
            .count();
        assert!((94..=96).contains(&inside), "{inside}");
        let [lo, hi] = iv.around(10.0, (0.0, 228.0));
        assert!(lo == 0.0 && (hi - 56.525).abs() < 1e-9, "{lo} {hi}");
        assert_eq!(ResidualInterval::fit(&pred[..19], &truth[..19], 0.95), None);
    }
}
