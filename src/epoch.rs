//! One epoch's two halves, as in the recipe's `train.py`: [`train_one_epoch`] (a pass
//! over the shuffled, augmented training batches, stopping on a non-finite loss) and
//! [`validate`] (loss and MAE or accuracy on the held-out fold), with the recipe's loss.
use tch::{Kind, Tensor};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::loader::{Batch, BatchLoader};
use crate::model::{Target, AGE_SCALE, M46};
use crate::optim::Adam;
use crate::runtime;

/// One pass over the training batches of `epoch`: the mean loss and the images seen.
/// A non-finite loss stops it before the update it would poison.
pub fn train_one_epoch(
    model: &M46,
    opt: &mut Adam,
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
        opt.step();
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

/// Validation loss, MAE in months (age) or accuracy (sex).
pub fn validate(
    model: &M46,
    loader: &BatchLoader,
    target: Target,
) -> Result<(f64, Option<f64>, Option<f64>)> {
    let (mut loss, mut abs, mut correct, mut n) = (0.0, 0.0, 0.0, 0usize);
    tch::no_grad(|| -> Result<()> {
        for batch in loader.epoch(0) {
            let out = model
                .forward(&batch.images, Some(&batch.male), false)
                .to_kind(Kind::Float);
            let k = batch.ids.len();
            loss += f64::try_from(loss_fn(target, &out, &batch.targets))? * k as f64;
            match target {
                Target::Age => {
                    abs +=
                        f64::try_from((&out - &batch.targets).abs().sum(Kind::Double))? * AGE_SCALE
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
        Target::Age => (loss / n, Some(abs / n), None),
        Target::Sex => (loss / n, None, Some(correct / n)),
    })
}
