//! One epoch's two halves, as in the recipe's `train.py`: [`train_one_epoch`] (a pass
//! over the shuffled, augmented training batches, stopping on a non-finite loss; with
//! optional gradient clipping and weight averaging) and [`validate`] (loss and MAE or
//! accuracy on the held-out fold, and the predictions a recalibration is fitted to), with
//! the recipe's loss.
use tch::{Kind, Tensor};

use crate::config::Config;
use crate::ema::Ema;
use crate::error::{Error, Result};
use crate::loader::{Batch, BatchLoader};
use crate::model::{Target, AGE_CENTER, AGE_SCALE, M46};
use crate::optim::Adam;
use crate::runtime;

/// One pass over the training batches of `epoch`: the mean loss and the images seen.
/// A non-finite loss stops it before the update it would poison.
pub fn train_one_epoch(
    model: &M46,
    opt: &mut Adam,
    mut ema: Option<&mut Ema>,
    loader: &BatchLoader,
    config: &Config,
    epoch: usize,
    progress: bool,
) -> Result<(f64, usize)> {
    let tc = &config.train;
    tch::manual_seed(config.runtime.seed.wrapping_add(epoch as u64) as i64);
    let batches = loader.num_batches();
    let bar = crate::progress::bar(batches as u64, &format!("epoch {epoch}/{}", tc.epochs));
    if !progress {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let (mut loss_sum, mut seen) = (0.0, 0usize);
    for (b, batch) in loader.epoch(epoch as u64).enumerate() {
        opt.lr = tc.lr_at(epoch, (b + 1) as f64 / batches as f64);
        let loss = forward_loss(
            model,
            &batch,
            config.model.target,
            tc.channels_last,
            tc.autocast,
        );
        let value = f64::try_from(&loss)?;
        if !value.is_finite() {
            bar.abandon();
            return Err(Error::Training {
                epoch,
                batch: b + 1,
                message: format!("the loss is {value}"),
            });
        }
        opt.zero_grad();
        loss.backward();
        if tc.clip_grad_norm > 0.0 {
            opt.clip_grad_norm(tc.clip_grad_norm);
        }
        opt.step();
        if let Some(ema) = ema.as_deref_mut() {
            ema.update(opt.step);
        }
        let n = batch.ids.len();
        (loss_sum, seen) = (loss_sum + value * n as f64, seen + n);
        bar.inc(1);
        bar.set_message(format!("epoch {epoch} loss {:.4}", loss_sum / seen as f64));
    }
    bar.finish_and_clear();
    Ok((loss_sum / seen as f64, seen))
}

/// One batch's training-mode forward pass and loss, as a step runs it: on CUDA the input
/// goes channels-last and the forward runs under bf16 autocast when `[train]` asks; the
/// loss is taken in f32.
pub fn forward_loss(
    model: &M46,
    batch: &Batch,
    target: Target,
    channels_last: bool,
    autocast: bool,
) -> Tensor {
    let cuda = batch.images.device().is_cuda();
    let x = if cuda && channels_last {
        runtime::channels_last(&batch.images)
    } else {
        batch.images.shallow_clone()
    }; // [N, 1, H, W]
    let out = tch::autocast(autocast && cuda, || {
        model.forward(&x, Some(&batch.male), true)
    });
    loss_fn(target, &out.to_kind(Kind::Float), &batch.targets) // [N, 1] → scalar
}

/// L1 on the standardised age; BCE (on the logit) for sex.
pub fn loss_fn(target: Target, out: &Tensor, y: &Tensor) -> Tensor {
    match target {
        Target::Age => out.l1_loss(y, tch::Reduction::Mean),
        Target::Sex => {
            out.binary_cross_entropy_with_logits::<Tensor>(y, None, None, tch::Reduction::Mean)
        }
    }
}

/// What one pass over the validation fold gives.
#[derive(Clone, Debug, Default)]
pub struct Validation {
    pub loss: f64,
    pub mae_months: Option<f64>,
    pub accuracy: Option<f64>,
    /// Age models: each image's prediction and truth in months, in loader order.
    pub pred_months: Vec<f64>,
    pub truth_months: Vec<f64>,
}

impl Validation {
    /// (loss, MAE, accuracy), as [`crate::metrics::EpochMetrics::new`] takes them.
    pub fn summary(&self) -> (f64, Option<f64>, Option<f64>) {
        (self.loss, self.mae_months, self.accuracy)
    }

    /// The linear recalibration these predictions call for (age models).
    pub fn calibration(&self) -> Option<crate::calibration::Calibration> {
        crate::calibration::Calibration::fit(&self.pred_months, &self.truth_months)
    }

    /// The 95% interval of the errors of these predictions, after `calibration` if given.
    pub fn interval(
        &self,
        calibration: Option<&crate::calibration::Calibration>,
    ) -> Option<crate::calibration::ResidualInterval> {
        let pred: Vec<f64> = match calibration {
            Some(c) => self.pred_months.iter().map(|&p| c.apply(p)).collect(),
            None => self.pred_months.clone(),
        };
        crate::calibration::ResidualInterval::fit(&pred, &self.truth_months, 0.95)
    }
}

/// Validation loss, MAE in months (age) or accuracy (sex), and the age predictions.
pub fn validate(model: &M46, loader: &BatchLoader, target: Target) -> Result<Validation> {
    let (mut loss, mut correct, mut n) = (0.0, 0.0, 0usize);
    let (mut pred, mut truth) = (Vec::new(), Vec::new());
    tch::no_grad(|| -> Result<()> {
        for batch in loader.epoch(0) {
            let out = model
                .forward(&batch.images, Some(&batch.male), false)
                .to_kind(Kind::Float); // [N, 1]
            let k = batch.ids.len();
            loss += f64::try_from(loss_fn(target, &out, &batch.targets))? * k as f64;
            match target {
                Target::Age => {
                    let months = |t: &Tensor| -> Result<Vec<f64>> {
                        let v = Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1))?;
                        Ok(v.into_iter().map(|y| y * AGE_SCALE + AGE_CENTER).collect())
                    };
                    pred.extend(months(&out)?);
                    truth.extend(months(&batch.targets)?);
                }
                Target::Sex => {
                    correct += f64::try_from(
                        out.ge(0.0)
                            .to_kind(Kind::Float)
                            .eq_tensor(&batch.targets)
                            .sum(Kind::Double),
                    )?
                }
            }
            n += k;
        }
        Ok(())
    })?;
    let n = n as f64;
    Ok(match target {
        Target::Age => Validation {
            loss: loss / n,
            mae_months: Some(
                pred.iter()
                    .zip(&truth)
                    .map(|(p, t)| (p - t).abs())
                    .sum::<f64>()
                    / n,
            ),
            accuracy: None,
            pred_months: pred,
            truth_months: truth,
        },
        Target::Sex => Validation {
            loss: loss / n,
            accuracy: Some(correct / n),
            ..Default::default()
        },
    })
}
