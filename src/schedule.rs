//! The `[train]` section (epochs, Adam's settings, the learning-rate schedule) and the
//! rate it gives at each step: constant (the recipe), cosine or step, with an optional
//! linear warmup. The rate is a function of the position in training alone, so a resumed
//! run continues on the same curve. `config.rs` composes this section; `train.rs` runs it.
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The learning-rate schedule: `schedule = { kind = "cosine", min_lr = 1e-5 }`. An unknown
/// kind or field is a config error when the file is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Schedule {
    /// `train.lr` throughout (the recipe).
    #[default]
    Constant,
    /// Half a cosine from `train.lr` at the first epoch towards `min_lr` after the last.
    Cosine {
        #[serde(default)]
        min_lr: f64,
    },
    /// Warmup then cosine, per step (a one-cycle shape): linear from 0 to `train.lr` over
    /// `train.warmup_epochs`, then half a cosine to `min_lr` at the end of the last epoch.
    #[serde(rename = "warmup_cosine")]
    WarmupCosine {
        #[serde(default)]
        min_lr: f64,
    },
    /// `train.lr` × `gamma` every `every` epochs.
    Step {
        #[serde(default = "default_step_every")]
        every: usize,
        #[serde(default = "default_step_gamma")]
        gamma: f64,
    },
}

fn default_step_every() -> usize {
    10
}

fn default_step_gamma() -> f64 {
    0.1
}

/// The update rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam with L2 weight decay added to the gradient (torch.optim.Adam; the recipe).
    #[default]
    Adam,
    /// Adam with decoupled weight decay (torch.optim.AdamW): weights shrink by
    /// lr · weight_decay each step, apart from the moments.
    AdamW,
}

/// Optimisation settings. `Default` is the recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    /// `adam` (the recipe) or `adamw`.
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub betas: [f64; 2],
    pub weight_decay: f64,
    pub schedule: Schedule,
    /// Rescale the gradients when their global L2 norm exceeds this (0 = off, the recipe),
    /// as torch.nn.utils.clip_grad_norm_.
    pub clip_grad_norm: f64,
    /// Keep an exponential moving average of the weights (and BatchNorm statistics) with
    /// this decay per step (0 = off, the recipe). When on, validation, `best` and
    /// `ema.safetensors` use the averaged weights; `last` keeps the raw ones to resume.
    pub ema_decay: f64,
    /// Fit a linear recalibration of the predictions on the validation fold after each
    /// epoch (truth ≈ slope · prediction + intercept) and store it in the checkpoint's
    /// sidecar; `evaluate` and `predict` apply it unless told not to. Off in the recipe.
    pub calibrate: bool,
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
            optimizer: OptimizerKind::Adam,
            lr: 2e-5,
            betas: [0.5, 0.999],
            weight_decay: 0.0,
            schedule: Schedule::Constant,
            clip_grad_norm: 0.0,
            ema_decay: 0.0,
            calibrate: false,
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
    pub fn lr_at(&self, epoch: usize, progress: f64) -> f64 {
        let done = (epoch - 1) as f64 + progress;
        if let Schedule::WarmupCosine { min_lr } = self.schedule {
            let warm = self.warmup_epochs;
            if done < warm {
                return self.lr * done / warm;
            }
            let t = ((done - warm) / (self.epochs as f64 - warm).max(1e-9)).min(1.0);
            return min_lr + 0.5 * (self.lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos());
        }
        let warmup = if self.warmup_epochs > 0.0 {
            (done / self.warmup_epochs).min(1.0)
        } else {
            1.0
        };
        self.schedule_at(epoch) * warmup
    }

    /// The schedule's learning rate for `epoch` (1-based), before warmup.
    pub fn schedule_at(&self, epoch: usize) -> f64 {
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine { min_lr } | Schedule::WarmupCosine { min_lr } => {
                let t = (epoch - 1) as f64 / self.epochs.max(1) as f64;
                min_lr + 0.5 * (self.lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Step { every, gamma } => {
                self.lr * gamma.powi(((epoch - 1) / every.max(1)) as i32)
            }
        }
    }

    /// Checks every value that would otherwise fail late or silently (a negative or NaN
    /// rate, zero epochs); the error names the key and the value.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, message: String| {
            Err(Error::ConfigKey {
                key: key.into(),
                message,
            })
        };
        if self.epochs == 0 {
            return bad("train.epochs", "0: train at least 1 epoch".into());
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        for (key, v) in [
            ("train.lr", self.lr),
            ("train.head_lr_scale", self.head_lr_scale),
        ] {
            if !positive(v) {
                return bad(key, format!("{v} must be a positive, finite number"));
            }
        }
        for (key, v) in [
            ("train.weight_decay", self.weight_decay),
            ("train.warmup_epochs", self.warmup_epochs),
            ("train.clip_grad_norm", self.clip_grad_norm),
        ] {
            if !non_negative(v) {
                return bad(key, format!("{v} must be a finite number >= 0"));
            }
        }
        match self.schedule {
            Schedule::Constant => {}
            Schedule::Cosine { min_lr } | Schedule::WarmupCosine { min_lr }
                if !non_negative(min_lr) =>
            {
                return bad(
                    "train.schedule.min_lr",
                    format!("{min_lr} must be a finite number >= 0"),
                )
            }
            Schedule::Cosine { min_lr } | Schedule::WarmupCosine { min_lr } if min_lr > self.lr => {
                return bad(
                    "train.schedule.min_lr",
                    format!("{min_lr} is above train.lr = {}", self.lr),
                )
            }
            Schedule::Cosine { .. } | Schedule::WarmupCosine { .. } => {}
            Schedule::Step { every: 0, .. } => {
                return bad("train.schedule.every", "0 must be >= 1".into())
            }
            Schedule::Step { gamma, .. } if !positive(gamma) => {
                return bad(
                    "train.schedule.gamma",
                    format!("{gamma} must be a positive, finite number"),
                )
            }
            Schedule::Step { .. } => {}
        }
        if self.warmup_epochs > self.epochs as f64 {
            return bad(
                "train.warmup_epochs",
                format!(
                    "{} is more than train.epochs = {}",
                    self.warmup_epochs, self.epochs
                ),
            );
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return bad(
                "train.ema_decay",
                format!("{} must be in [0, 1) (0 = off)", self.ema_decay),
            );
        }
        if let Some(b) = self.betas.iter().find(|b| !(0.0..1.0).contains(*b)) {
            return bad("train.betas", format!("{b} must be in [0, 1)"));
        }
        Ok(())
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
        assert_eq!(c.lr_at(7, 0.0), 1.0);
        let cos = TrainConfig {
            schedule: Schedule::Cosine { min_lr: 0.0 },
            ..c.clone()
        };
        assert_eq!(cos.lr_at(1, 0.0), 1.0);
        assert!((cos.lr_at(6, 0.0) - 0.5).abs() < 1e-12);
        let step = TrainConfig {
            schedule: Schedule::Step {
                every: 3,
                gamma: 0.5,
            },
            ..c.clone()
        };
        assert_eq!((step.lr_at(3, 0.0), step.lr_at(4, 0.0)), (1.0, 0.5));
        let warm = TrainConfig {
            warmup_epochs: 2.0,
            ..c.clone()
        };
        assert_eq!(warm.lr_at(1, 0.0), 0.0);
        assert_eq!(warm.lr_at(1, 0.5), 0.25);
        assert_eq!(warm.lr_at(2, 0.5), 0.75);
        assert_eq!(warm.lr_at(3, 0.0), 1.0);
        let one_cycle = TrainConfig {
            schedule: Schedule::WarmupCosine { min_lr: 0.0 },
            warmup_epochs: 2.0,
            ..c.clone()
        };
        assert_eq!(one_cycle.lr_at(1, 0.5), 0.25, "linear warmup");
        assert_eq!(one_cycle.lr_at(3, 0.0), 1.0, "the peak when warmup ends");
        assert!(
            (one_cycle.lr_at(7, 0.0) - 0.5).abs() < 1e-12,
            "half-way down"
        );
        assert!(
            one_cycle.lr_at(6, 0.1) < one_cycle.lr_at(6, 0.0),
            "per step"
        );
        assert!(one_cycle.lr_at(10, 1.0).abs() < 1e-12, "min_lr at the end");
    }

    #[test]
    fn a_schedule_is_read_as_a_table_and_an_unknown_one_is_refused() {
        let read = |text: &str| toml::from_str::<TrainConfig>(text);
        let c = read("schedule = { kind = \"cosine\", min_lr = 1e-5 }").unwrap();
        assert_eq!(c.schedule, Schedule::Cosine { min_lr: 1e-5 });
        let c = read("schedule = { kind = \"warmup_cosine\" }").unwrap();
        assert_eq!(c.schedule, Schedule::WarmupCosine { min_lr: 0.0 });
        let c = read("optimizer = \"adamw\"").unwrap();
        assert_eq!(c.optimizer, OptimizerKind::AdamW);
        let c = read("schedule = { kind = \"step\" }").unwrap();
        assert_eq!(
            c.schedule,
            Schedule::Step {
                every: 10,
                gamma: 0.1
            }
        );
        let msg = read("schedule = { kind = \"warp\" }")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("warp"), "{msg}");
        let msg = read("schedule = { kind = \"cosine\", min = 1e-5 }")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("min"), "{msg}");
        let text = toml::to_string(&TrainConfig::default()).unwrap();
        assert_eq!(read(&text).unwrap(), TrainConfig::default(), "{text}");
    }
}
