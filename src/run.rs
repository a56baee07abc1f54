//! The run directory of a training run: the resolved `config.toml`, and after each epoch
//! one checkpoint set — `last.safetensors` + `last.json`, `last.optim.safetensors` (Adam),
//! `ema.*` (the weight average, when `train.ema_decay` is on), `best.*` when validation
//! improved (the average's when there is one), `metrics.csv` and the TensorBoard event file —
//! written through [`crate::commit`], so a kill at any moment leaves the set of the last
//! finished epoch, and `--resume` continues from exactly there.
use std::path::{Path, PathBuf};

use tch::nn;

use crate::checkpoint::{self, CheckpointMeta};
use crate::commit::{self, Fault, Faults, WriteFn};
use crate::config::Config;
use crate::ema::Ema;
use crate::error::{Error, Result};
use crate::metrics::{read_metrics, write_metrics, EpochMetrics, METRICS};
use crate::optim::Adam;

pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";
pub const OPTIM: &str = "last.optim.safetensors";
pub const EMA: &str = "ema.safetensors";
pub const CONFIG: &str = "config.toml";

/// An open run directory.
#[derive(Debug)]
pub struct RunDir {
    pub path: PathBuf,
    /// The TensorBoard event file's name (kept across resumes) and its creation time.
    events: (String, f64),
    pub faults: Faults,
}

impl RunDir {
    /// Opens (creating) `path`, first finishing or discarding a set a kill interrupted and
    /// removing stale temporaries. A fresh run (`resume` false) refuses a directory that
    /// already holds a checkpoint.
    pub fn open(path: &Path, resume: bool, fault: Option<Fault>) -> Result<RunDir> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))?;
        let mut faults = Faults::new(fault);
        let recovered = commit::recover(path, &mut faults)?;
        if !recovered.rolled_forward.is_empty() {
            tracing::warn!(
                "{}: finished writing the checkpoint set a kill interrupted",
                path.display()
            );
        }
        if !resume && path.join(LAST).exists() {
            return Err(Error::Invalid {
                what: "run directory".into(),
                message: format!(
                    "{} already holds a run; pass --resume to continue it or choose another --out",
                    path.display()
                ),
            });
        }
        let events = crate::tensorboard::find(path).unwrap_or_else(|| {
            let now = crate::metrics::wall_time();
            (crate::tensorboard::file_name(now as u64), now)
        });
        Ok(RunDir {
            path: path.to_path_buf(),
            events,
            faults,
        })
    }

    pub fn last(&self) -> PathBuf {
        self.path.join(LAST)
    }

    pub fn best(&self) -> PathBuf {
        self.path.join(BEST)
    }

    pub fn ema(&self) -> PathBuf {
        self.path.join(EMA)
    }

    /// Whether a committed set still waits to be moved into place (a failed rename).
    pub fn has_pending_commit(&self) -> bool {
        commit::is_pending(&self.path)
    }

    /// The epoch of the last complete checkpoint set, if any.
    pub fn last_epoch(&self) -> Option<usize> {
        checkpoint::read_meta(&self.last()).ok().map(|m| m.epoch)
    }

    /// What a failed epoch leaves to continue from, for its error message.
    pub fn kept(&self) -> String {
        match self.last_epoch() {
            Some(done) => format!(
                "the last good checkpoint {} (epoch {done}) is intact and `--resume` continues from it",
                self.last().display()
            ),
            None => "no checkpoint was saved: no epoch finished".into(),
        }
    }

    /// Writes the resolved config (a counted step, so fault injection reaches it too).
    pub fn save_config(&mut self, config: &Config) -> Result<()> {
        let path = self.path.join(CONFIG);
        self.faults.step(&path)?;
        config.save(&path)
    }

    /// Restores weights, Adam state and the weight average (when `ema` is given) from the
    /// last set; returns its sidecar and the history up to it.
    pub fn restore(
        &self,
        vs: &mut nn::VarStore,
        opt: &mut Adam,
        ema: Option<&mut Ema>,
    ) -> Result<(CheckpointMeta, Vec<EpochMetrics>)> {
        let meta = checkpoint::read_meta(&self.last())?;
        checkpoint::load_weights(vs, &self.last())?;
        opt.load(&self.path.join(OPTIM))?;
        if let Some(ema) = ema {
            ema.load(&self.ema())?;
        }
        let mut history = read_metrics(&self.path)?;
        history.retain(|m| m.epoch <= meta.epoch);
        Ok((meta, history))
    }

    /// Writes one epoch's set: last (and best when it improved), the weight average, the
    /// optimizer, the metrics and the event file. On failure (a full disk) the previous
    /// set is untouched.
    pub fn save_epoch(
        &mut self,
        vs: &nn::VarStore,
        opt: &Adam,
        set: EpochSet<'_>,
        history: &[EpochMetrics],
    ) -> Result<()> {
        // `last` is serialised once; an improved epoch's `best` is a second name for the
        // staged file it is (a copy where the file system has no hard links).
        let last = set.last;
        let mut files: Vec<(String, WriteFn<'_>)> = vec![
            (
                LAST.into(),
                Box::new(move |p: &Path| checkpoint::write_weights(vs, p)),
            ),
            (
                sidecar_name(LAST),
                Box::new(move |p: &Path| checkpoint::write_meta(last, p)),
            ),
        ];
        let mut best = (LAST, last);
        if let Some((meta, ema)) = set.averaged {
            files.push((EMA.into(), Box::new(move |p: &Path| ema.save(p))));
            files.push((
                sidecar_name(EMA),
                Box::new(move |p: &Path| checkpoint::write_meta(meta, p)),
            ));
            best = (EMA, meta);
        }
        if set.improved {
            let (from, meta) = best;
            files.push((
                BEST.into(),
                Box::new(move |p: &Path| same_as(&p.with_file_name(from), p)),
            ));
            files.push((
                sidecar_name(BEST),
                Box::new(move |p: &Path| checkpoint::write_meta(meta, p)),
            ));
        }
        files.push((OPTIM.into(), Box::new(move |p: &Path| opt.save(p))));
        files.push((
            METRICS.into(),
            Box::new(move |p: &Path| write_metrics(p, history)),
        ));
        let created = self.events.1;
        files.push((
            self.events.0.clone(),
            Box::new(move |p: &Path| crate::tensorboard::write(p, history, created)),
        ));
        commit::commit(&self.path, files, &mut self.faults)
    }
}

/// What one epoch writes: `last`'s sidecar (the raw weights), the weight average with its
/// sidecar when there is one, and whether validation improved (then `best` is the
/// average, or `last` without one).
#[derive(Clone, Copy, Debug)]
pub struct EpochSet<'a> {
    pub last: &'a CheckpointMeta,
    pub averaged: Option<(&'a CheckpointMeta, &'a Ema)>,
    pub improved: bool,
}

/// `best.json` for `best.safetensors`.
fn sidecar_name(weights: &str) -> String {
    checkpoint::sidecar(Path::new(weights))
        .display()
        .to_string()
}

/// Makes `to` a second name of the (already written) file `from`, or a copy of it.
fn same_as(from: &Path, to: &Path) -> Result<()> {
    std::fs::hard_link(from, to)
        .or_else(|_| std::fs::copy(from, to).map(|_| ()))
        .map_err(|e| Error::io(to, e))
}
