//! Optimisation settings and the learning-rate schedule: constant (the recipe), cosine
//! or step, with an optional linear warmup. The rate is a function of the position in
//! training alone, so a resumed run continues on the same curve.
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Optimisation settings. `Default` is the recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub lr: f64,
    pub betas: [f64; 2],
    pub weight_decay: f64,
    /// `constant` (the recipe), `cosine` (to `min_lr`) or `step` (× `step_gamma` every `step_every` epochs).
    pub schedule: String,
    pub min_lr: f64,
    pub step_every: usize,
    pub step_gamma: f64,
    /// Linear learning-rate warmup over this many epochs (fractional; stepped per batch),
    /// so the first updates of a fresh network cannot throw it far off (0 = none, the recipe).
    pub warmup_epochs: f64,
    /// Learning-rate multiplier for the three fully connected layers (`fc1`–`fc3`). Adam
    /// moves every weight by about the learning rate each step, so a layer's output moves
    /// in proportion to its width: the 2048-wide head swings at rates the convolutions
    /// train well at. 1 = the same rate everywhere (the recipe).
    pub head_lr_scale: f64,
    /// CUDA only: channels-last memory format for convolutions.
    pub channels_last: bool,
    /// CUDA only: cuDNN autotuning.
    pub cudnn_benchmark: bool,
    /// CUDA only: bf16 mixed precision through libtorch autocast.
    pub autocast: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 50,
            lr: 2e-5,
            betas: [0.5, 0.999],
            weight_decay: 0.0,
            schedule: "constant".into(),
            min_lr: 0.0,
            step_every: 10,
            step_gamma: 0.1,
            warmup_epochs: 0.0,
            head_lr_scale: 1.0,
            channels_last: true,
            cudnn_benchmark: true,
            autocast: false,
        }
    }
}

impl TrainConfig {
    /// Learning rate at `progress` (0–1) through `epoch` (1-based): the schedule times
    /// the warmup factor. A function of the position alone, so resuming is exact.
    pub fn lr_at(&self, epoch: usize, progress: f64) -> Result<f64> {
        let done = (epoch - 1) as f64 + progress;
        let warmup = if self.warmup_epochs > 0.0 {
            (done / self.warmup_epochs).min(1.0)
        } else {
            1.0
        };
        Ok(self.schedule_at(epoch)? * warmup)
    }

    /// The schedule's learning rate for `epoch` (1-based), before warmup.
    pub fn schedule_at(&self, epoch: usize) -> Result<f64> {
        match self.schedule.as_str() {
            "constant" => Ok(self.lr),
            "cosine" => {
                let t = (epoch - 1) as f64 / self.epochs.max(1) as f64;
                Ok(self.min_lr
                    + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * t).cos()))
            }
            "step" => Ok(self.lr
                * self
                    .step_gamma
                    .powi(((epoch - 1) / self.step_every.max(1)) as i32)),
            other => Err(Error::Invalid {
                what: "train.schedule".into(),
                message: format!("{other:?}: expected constant, cosine or step"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_functions_of_the_epoch() {
        let c = TrainConfig {
            lr: 1.0,
            epochs: 10,
            ..Default::default()
        };
        assert_eq!(c.lr_at(7, 0.0).unwrap(), 1.0);
        let cos = TrainConfig {
            schedule: "cosine".into(),
            ..c.clone()
        };
        assert_eq!(cos.lr_at(1, 0.0).unwrap(), 1.0);
        assert!((cos.lr_at(6, 0.0).unwrap() - 0.5).abs() < 1e-12);
        let step = TrainConfig {
            schedule: "step".into(),
            step_every: 3,
            step_gamma: 0.5,
            ..c.clone()
        };
        assert_eq!(
            (step.lr_at(3, 0.0).unwrap(), step.lr_at(4, 0.0).unwrap()),
            (1.0, 0.5)
        );
        let warm = TrainConfig {
            warmup_epochs: 2.0,
            ..c.clone()
        };
        assert_eq!(warm.lr_at(1, 0.0).unwrap(), 0.0);
        assert_eq!(warm.lr_at(1, 0.5).unwrap(), 0.25);
        assert_eq!(warm.lr_at(2, 0.5).unwrap(), 0.75);
        assert_eq!(warm.lr_at(3, 0.0).unwrap(), 1.0);
        let bad = TrainConfig {
            schedule: "warp".into(),
            ..c
        };
        assert!(bad.lr_at(1, 0.0).unwrap_err().to_string().contains("warp"));
    }
}
