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
//! [`train`] reads like the recipe's `train.py`: open or resume the run directory, build
//! the loaders and the model, then for each epoch [`train_one_epoch`] and [`validate`]
//! (one epoch's two halves, in `epoch.rs`) and `record_epoch`.
use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::{nn, Device};

use crate::cache::ImageCache;
use crate::checkpoint::{CheckpointMeta, Versions};
use crate::commit::Fault;
use crate::config::Config;
use crate::ema::Ema;
use crate::epoch::Validation;
use crate::error::{Error, Result};
use crate::loader::{BatchLoader, LoaderConfig};
use crate::metrics::EpochMetrics;
use crate::model::M46;
use crate::optim::Adam;
use crate::run::RunDir;
use crate::runtime;

pub use crate::epoch::{loss_fn, train_one_epoch, validate};

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

/// Trains `config` on `data_dir` into `run_dir`, calling `on_epoch` after each epoch.
/// As the recipe's `train.py`: set up, then per epoch train, validate and record.
pub fn train(
    config: &Config,
    data_dir: &Path,
    run_dir: &Path,
    options: &TrainOptions,
    mut on_epoch: impl FnMut(&EpochMetrics),
) -> Result<TrainSummary> {
    config.validate()?;
    let device = runtime::init(&config.runtime)?;
    let mut run = RunDir::open(run_dir, options.resume, options.fault)?;
    run.save_config(config)?;
    let (batches, held_out) = loaders(config, data_dir, device)?;
    let input = batches.input_size().map(|v| v as i64);
    let input = [1, input[0], input[1]]; // [C, H, W]

    let mut vs = nn::VarStore::new(device);
    let model = M46::new(&vs.root(), input, config.model.clone())?;
    let tc = &config.train;
    let mut opt = Adam::from_config(&vs, tc);
    let mut ema = (tc.ema_decay > 0.0).then(|| Ema::new(&vs, tc.ema_decay));
    let mut record = Record::default();
    if options.resume && run.last().exists() {
        record = Record::restore(&run, &mut vs, &mut opt, ema.as_mut())?;
    }
    runtime::cuda_setup(&mut vs, tc.cudnn_benchmark, tc.channels_last, tc.autocast);

    let progress = options.progress;
    for epoch in record.next_epoch()..=tc.epochs {
        let started = Instant::now();
        let trained = train_one_epoch(
            &model,
            &mut opt,
            ema.as_mut(),
            &batches,
            config,
            epoch,
            progress,
        );
        let (train_loss, seen) = trained.map_err(|e| diverged(e, &run))?;
        let speed = seen as f64 / started.elapsed().as_secs_f64();
        let target = config.model.target;
        let raw = validate(&model, &held_out, target)?;
        // With weight averaging the average is what is validated, chosen and kept as best.
        let averaged = match &ema {
            Some(ema) => Some(ema.with_average(|| validate(&model, &held_out, target))?),
            None => None,
        };
        if let Some(avg) = &averaged {
            tracing::info!(
                epoch,
                raw_val_mae = raw.mae_months,
                ema_val_mae = avg.mae_months,
                "validation of the raw and the averaged weights"
            );
        }
        let chosen = averaged.as_ref().unwrap_or(&raw);
        let seconds = started.elapsed().as_secs_f64();
        let metrics =
            EpochMetrics::new(epoch, train_loss, chosen.summary(), opt.lr, seconds, speed);
        let epoch_record = EpochRecord {
            metrics: &metrics,
            raw: &raw,
            averaged: averaged.as_ref().zip(ema.as_ref()),
        };
        record_epoch(
            &mut run,
            &vs,
            &opt,
            config,
            input,
            &mut record,
            epoch_record,
        )?;
        on_epoch(&metrics);
        if options.stop_after_epoch == Some(epoch) {
            break;
        }
    }
    Ok(TrainSummary {
        run_dir: run_dir.to_path_buf(),
        history: record.history,
        best: run.best(),
        last: run.last(),
    })
}

/// The training batches (augmented) and validation batches (all of them) of `config`'s
/// folds over `data_dir`, each cached once; an empty side is an error.
fn loaders(config: &Config, data_dir: &Path, device: Device) -> Result<(BatchLoader, BatchLoader)> {
    let (train_df, val_df) = config.fold_frames(data_dir)?;
    tracing::info!(train = train_df.height(), val = val_df.height(), "folds");
    let cache_dir = config.paths.cache_dir();
    let (target, seed) = (config.model.target, config.runtime.seed);
    let train_cache = ImageCache::open(&train_df, &config.preprocess, &cache_dir)?;
    let val_cache = ImageCache::open(&val_df, &config.preprocess, &cache_dir)?;
    let augment = Some(config.augment.clone());
    let train = BatchLoader::new(
        &train_cache,
        &train_df,
        target,
        config.loader.clone(),
        augment,
        device,
        seed,
    )?;
    let val_config = LoaderConfig {
        drop_last: false,
        ..config.loader.clone()
    };
    let val = BatchLoader::new(&val_cache, &val_df, target, val_config, None, device, seed)?;
    if train.is_empty() || val.is_empty() {
        return Err(Error::Invalid {
            what: "folds".into(),
            message: format!(
                "the training ({}) or validation ({}) set is empty",
                train.len(),
                val.len()
            ),
        });
    }
    if train.num_batches() == 0 {
        return Err(Error::ConfigKey {
            key: "loader.drop_last".into(),
            message: format!(
                "{} training images make no full batch of {}: nothing would be trained \
                 (lower loader.batch_size or set drop_last = false)",
                train.len(),
                config.loader.batch_size
            ),
        });
    }
    Ok((train, val))
}

/// What the epochs so far left: their metrics and the best validation loss.
#[derive(Debug)]
struct Record {
    /// The last finished epoch (0: none).
    epoch: usize,
    history: Vec<EpochMetrics>,
    best_loss: f64,
}

impl Default for Record {
    fn default() -> Self {
        Self {
            epoch: 0,
            history: Vec::new(),
            best_loss: f64::INFINITY,
        }
    }
}

impl Record {
    /// Weights, Adam moments, the weight average and the history of the run's last set.
    fn restore(
        run: &RunDir,
        vs: &mut nn::VarStore,
        opt: &mut Adam,
        ema: Option<&mut Ema>,
    ) -> Result<Record> {
        let (meta, history) = run.restore(vs, opt, ema)?;
        tracing::info!(epoch = meta.epoch, "resumed");
        Ok(Record {
            epoch: meta.epoch,
            history,
            best_loss: meta.best_val_loss,
        })
    }

    fn next_epoch(&self) -> usize {
        self.epoch + 1
    }
}

/// One finished epoch: its metrics (of the validated weights), the raw weights'
/// validation, and the average's when weights are averaged.
struct EpochRecord<'a> {
    metrics: &'a EpochMetrics,
    raw: &'a Validation,
    averaged: Option<(&'a Validation, &'a Ema)>,
}

/// Records a finished epoch: the checkpoint set (best too when validation improved),
/// metrics and events in one commit, then the training curves.
fn record_epoch(
    run: &mut RunDir,
    vs: &nn::VarStore,
    opt: &Adam,
    config: &Config,
    input: [i64; 3],
    record: &mut Record,
    epoch: EpochRecord<'_>,
) -> Result<()> {
    let metrics = epoch.metrics;
    let improved = metrics.val_loss < record.best_loss;
    record.best_loss = record.best_loss.min(metrics.val_loss);
    record.history.push(metrics.clone());
    record.epoch = metrics.epoch;
    let calibrate = |v: &Validation| config.train.calibrate.then(|| v.calibration()).flatten();
    let meta = |v: &Validation, m: EpochMetrics| {
        let calibration = calibrate(v);
        CheckpointMeta {
            config: config.clone(),
            epoch: metrics.epoch,
            metrics: m,
            best_val_loss: record.best_loss,
            input_shape: input,
            versions: Versions::current(),
            interval: v.interval(calibration.as_ref()),
            raw_interval: calibration.and_then(|_| v.interval(None)),
            calibration,
        }
    };
    let raw_metrics = EpochMetrics {
        val_loss: epoch.raw.loss,
        val_mae_months: epoch.raw.mae_months,
        val_accuracy: epoch.raw.accuracy,
        ..metrics.clone()
    };
    let last = meta(epoch.raw, raw_metrics);
    let averaged = epoch
        .averaged
        .map(|(v, ema)| (meta(v, metrics.clone()), ema));
    let set = crate::run::EpochSet {
        last: &last,
        averaged: averaged.as_ref().map(|(m, e)| (m, *e)),
        improved,
    };
    run.save_epoch(vs, opt, set, &record.history)
        .map_err(|e| unsaved(e, metrics.epoch, run))?;
    // A figure is a convenience: failing to draw it must not stop training.
    let curves = crate::plot::TrainingCurves {
        history: record.history.clone(),
    };
    if let Err(e) = crate::plot::save(&curves, &run.path.join("curves.png"), None) {
        tracing::warn!("training curves not drawn: {e}");
    }
    Ok(())
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
