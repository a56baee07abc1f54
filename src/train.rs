//! Training as in the recipe: L1 loss on the standardised age (BCE for sex), Adam
//! lr 2e-5, betas (0.5, 0.999), batch 8, 50 epochs, fold 10 of 10 held out, seed 42.
//!
//! Each epoch reports train/validation loss, validation MAE (months) or accuracy, time
//! and images/s, and appends them to `metrics.csv` and TensorBoard events in the run
//! directory (see [`crate::run`]: the resolved `config.toml` and, per epoch, one
//! checkpoint set written as a whole) and redraw `curves.png`. A killed run continues
//! with `resume`: weights, Adam moments and the epoch counter are restored, and every
//! random stream is a function of (seed, epoch), so on one machine the resumed run ends
//! with the same weights.
//!
//! `train` is the loop over epochs; [`train_one_epoch`] and [`validate`] are one epoch's
//! two halves, as in the recipe's `train.py`.
use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::{nn, Kind, Tensor};

use crate::cache::ImageCache;
use crate::checkpoint::{CheckpointMeta, EpochMetrics, Versions};
use crate::commit::Fault;
use crate::config::Config;
use crate::dataset::{Dataset, Split};
use crate::error::{Error, Result};
use crate::loader::{BatchLoader, Target, AGE_SCALE};
use crate::model::M46;
use crate::optim::Adam;
use crate::run::RunDir;

pub use crate::schedule::TrainConfig;

/// How a call to [`train`] runs.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Continue from `last.safetensors` in the run directory.
    pub resume: bool,
    /// Stop (as if killed) after this epoch, without finishing the run. For tests.
    pub stop_after_epoch: Option<usize>,
    /// Inject a kill or a full disk at a numbered checkpoint-write step. For tests.
    pub fault: Option<Fault>,
    /// Show progress bars.
    pub progress: bool,
}

/// What a finished (or stopped) run leaves.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub run_dir: PathBuf,
    pub history: Vec<EpochMetrics>,
    pub best: PathBuf,
    pub last: PathBuf,
}

/// The training and validation frames of `config.split` over `data_dir`'s train split.
pub fn split_frames(
    config: &Config,
    data_dir: &Path,
) -> Result<(polars::prelude::DataFrame, polars::prelude::DataFrame)> {
    let (_, ds) = Dataset::from_dir(data_dir, Split::Train, config.data.layout)?;
    if config.model.target == Target::Age
        || config.split.method == crate::folds::FoldMethod::Stratified
    {
        crate::dataset::require_labels(&ds.frame, &ds.csv, "training")?;
    }
    let s = &config.split;
    crate::folds::split(
        &ds.frame,
        s.test_fold,
        s.n_folds,
        s.sex,
        s.method,
        config.runtime.seed,
    )
}

/// Trains `config` on `data_dir` into `run_dir`, calling `on_epoch` after each epoch.
pub fn train(
    config: &Config,
    data_dir: &Path,
    run_dir: &Path,
    options: &TrainOptions,
    mut on_epoch: impl FnMut(&EpochMetrics),
) -> Result<TrainSummary> {
    config.validate()?;
    let device = crate::runtime::init(config)?;
    let tc = &config.train;
    let mut run = RunDir::open(run_dir, options.resume, options.fault)?;
    run.save_config(config)?;

    let (train_df, val_df) = split_frames(config, data_dir)?;
    tracing::info!(train = train_df.height(), val = val_df.height(), "split");
    let cache_dir = config.paths.cache_dir();
    let train_cache = ImageCache::open(&train_df, &config.preprocess, &cache_dir)?;
    let val_cache = ImageCache::open(&val_df, &config.preprocess, &cache_dir)?;
    let target = config.model.target;
    let seed = config.runtime.seed;
    let train_loader = BatchLoader::new(
        &train_cache,
        &train_df,
        target,
        config.loader.clone(),
        Some(config.augment.clone()),
        device,
        seed,
    )?;
    let val_config = crate::loader::LoaderConfig {
        drop_last: false,
        ..config.loader.clone()
    };
    let val_loader = BatchLoader::new(&val_cache, &val_df, target, val_config, None, device, seed)?;
    if train_loader.is_empty() || val_loader.is_empty() {
        return Err(Error::Invalid {
            what: "split".into(),
            message: format!(
                "the training ({}) or validation ({}) set is empty",
                train_loader.len(),
                val_loader.len()
            ),
        });
    }
    if train_loader.num_batches() == 0 {
        return Err(Error::ConfigKey {
            key: "loader.drop_last".into(),
            message: format!(
                "{} training images make no full batch of {}: nothing would be trained \
                 (lower loader.batch_size or set drop_last = false)",
                train_loader.len(),
                config.loader.batch_size
            ),
        });
    }
    let [h, w] = train_loader.input_size().map(|v| v as i64);

    let mut vs = nn::VarStore::new(device);
    let model = M46::new(&vs.root(), [1, h, w], config.model.clone())?;
    let mut opt = Adam::new(&vs, tc.lr, (tc.betas[0], tc.betas[1]), tc.weight_decay);
    opt.scale_lr("fc", tc.head_lr_scale);
    let (mut start_epoch, mut best_loss, mut history) = (1, f64::INFINITY, Vec::new());
    if options.resume && run.last().exists() {
        let (meta, done) = run.restore(&mut vs, &mut opt)?;
        (start_epoch, best_loss, history) = (meta.epoch + 1, meta.best_val_loss, done);
        tracing::info!(epoch = meta.epoch, "resumed");
    }
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(tc.cudnn_benchmark);
        if tc.channels_last {
            tch::no_grad(|| {
                for (_, mut v) in vs.variables() {
                    if v.dim() == 4 {
                        v.set_data(&channels_last(&v));
                    }
                }
            });
        }
    }
    if device.is_cuda() && tc.autocast {
        set_cuda_autocast_bf16(true);
    }

    for epoch in start_epoch..=tc.epochs {
        let started = Instant::now();
        let (train_loss, seen) = train_one_epoch(
            &model,
            &mut opt,
            &train_loader,
            config,
            epoch,
            options.progress,
        )
        .map_err(|e| diverged(e, &run))?;
        let train_seconds = started.elapsed().as_secs_f64();
        let (val_loss, mae, acc) = validate(&model, &val_loader, target)?;
        let metrics = EpochMetrics {
            epoch,
            train_loss,
            val_loss,
            val_mae_months: mae,
            val_accuracy: acc,
            lr: opt.lr,
            seconds: started.elapsed().as_secs_f64(),
            images_per_s: seen as f64 / train_seconds,
            wall_time: crate::tensorboard::wall_time(),
        };
        let improved = val_loss < best_loss;
        best_loss = best_loss.min(val_loss);
        history.push(metrics.clone());
        let meta = meta(config, &metrics, best_loss, [1, h, w]);
        run.save_epoch(&vs, &opt, &meta, improved, &history)
            .map_err(|e| unsaved(e, epoch, &run))?;
        // A figure is a convenience: failing to draw it must not stop training.
        let curves = crate::plot::TrainingCurves {
            history: history.clone(),
        };
        if let Err(e) = crate::plot::save(&curves, &run_dir.join("curves.png"), None) {
            tracing::warn!("training curves not drawn: {e}");
        }
        on_epoch(&metrics);
        if options.stop_after_epoch == Some(epoch) {
            break;
        }
    }
    Ok(TrainSummary {
        run_dir: run_dir.to_path_buf(),
        history,
        best: run.best(),
        last: run.last(),
    })
}

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
    let device = loader.device;
    tch::manual_seed(config.runtime.seed.wrapping_add(epoch as u64) as i64);
    let batches = loader.num_batches();
    let bar = crate::progress::bar(batches as u64, &format!("epoch {epoch}/{}", tc.epochs));
    if !progress {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let (mut loss_sum, mut seen) = (0.0, 0usize);
    for (b, batch) in loader.epoch(epoch as u64).enumerate() {
        opt.lr = tc.lr_at(epoch, (b + 1) as f64 / batches as f64)?;
        let x = if device.is_cuda() && tc.channels_last {
            channels_last(&batch.images)
        } else {
            batch.images
        };
        let out = tch::autocast(tc.autocast && device.is_cuda(), || {
            model.forward(&x, Some(&batch.male), true)
        });
        let loss = loss_fn(
            config.model.target,
            &out.to_kind(Kind::Float),
            &batch.targets,
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

/// A diverged loss, with what is left on disk to continue from.
fn diverged(e: Error, run: &RunDir) -> Error {
    let Error::Training {
        epoch,
        batch,
        message,
    } = e
    else {
        return e;
    };
    let kept = run.kept();
    Error::Training {
        epoch,
        batch,
        message: format!(
            "{message}; {kept} (lower train.lr or add train.warmup_epochs, or check the data)"
        ),
    }
}

/// A checkpoint set that could not be written (a full disk), with what is left.
fn unsaved(e: Error, epoch: usize, run: &RunDir) -> Error {
    if run.has_pending_commit() {
        return Error::Checkpoint {
            path: run.path.clone(),
            message: format!(
                "the checkpoint of epoch {epoch} was committed but not all moved into place ({e}); \
                 `--resume` completes it first"
            ),
        };
    }
    let kept = run.kept();
    Error::Checkpoint {
        path: run.path.clone(),
        message: format!(
            "the checkpoint of epoch {epoch} could not be written ({e}); {kept}; free space first"
        ),
    }
}

extern "C" {
    fn bone_age_set_cuda_autocast_bf16(bf16: i32);
    fn bone_age_cuda_autocast_is_bf16() -> i32;
}

/// Selects bfloat16 (else float16) as libtorch's CUDA autocast dtype; `tch::autocast`
/// only switches autocast on and off (csrc/autocast.cpp).
pub fn set_cuda_autocast_bf16(bf16: bool) {
    // SAFETY: plain calls into libtorch's global autocast settings; no pointers cross.
    unsafe { bone_age_set_cuda_autocast_bf16(i32::from(bf16)) }
}

/// Whether libtorch's CUDA autocast dtype is bfloat16.
pub fn cuda_autocast_is_bf16() -> bool {
    // SAFETY: as above.
    unsafe { bone_age_cuda_autocast_is_bf16() != 0 }
}

/// Channels-last strides for a 4-d tensor (the permute–contiguous–permute idiom).
fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

fn meta(config: &Config, metrics: &EpochMetrics, best: f64, input: [i64; 3]) -> CheckpointMeta {
    CheckpointMeta {
        config: config.clone(),
        epoch: metrics.epoch,
        metrics: metrics.clone(),
        best_val_loss: best,
        input_shape: input,
        versions: Versions::current(),
    }
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

/// Reads `metrics.csv` from a run directory (empty when absent).
pub fn read_metrics(run_dir: &Path) -> Result<Vec<EpochMetrics>> {
    crate::run::read_metrics(run_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_autocast_dtype_switch_reaches_libtorch() {
        set_cuda_autocast_bf16(true);
        assert!(cuda_autocast_is_bf16());
        set_cuda_autocast_bf16(false);
        assert!(!cuda_autocast_is_bf16());
    }
}
