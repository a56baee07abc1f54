//! Bias correction: a linear recalibration of age predictions against the truth, fitted on
//! the validation fold (as Deeplasia does per model). Short runs regress towards the mean:
//! young hands read older and old hands younger, a slope below 1 that the residual plot
//! shows; `truth ≈ slope · prediction + intercept` undoes it. Stored in the checkpoint's
//! sidecar; `evaluate` and `predict` apply it unless told not to.
use serde::{Deserialize, Serialize};

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
}
