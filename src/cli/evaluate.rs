//! `bone-age evaluate`: a checkpoint or an ensemble on a labelled set (metrics, each
//! member's, the interval's coverage, predictions, figures).
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bone_age::evaluate::EvalOptions;
use bone_age::{Config, Ensemble};
use clap::Args;

use super::data::DataSource;

#[derive(Args)]
pub struct EvaluateArgs {
    /// A `*.safetensors` checkpoint with its `.json` sidecar, or a run directory: then its
    /// weight average (ema), else best, else last. A K-fold run (`train --folds K`), or the
    /// flag repeated, scores an ensemble: the members' mean, each member alone, the spread.
    #[arg(long, value_name = "FILE|RUN_DIR", required = true)]
    checkpoint: Vec<PathBuf>,
    #[command(flatten)]
    source: DataSource,
    /// The checkpoint's held-out validation fold of the train split. This is also the
    /// default when --data-dir has no labelled test split and neither --split nor
    /// --labels is given.
    #[arg(long, conflicts_with_all = ["labels", "split"])]
    validation: bool,
    /// Average this many augmented passes with the plain one.
    #[arg(long, default_value_t = 0)]
    tta: usize,
    /// Robustness check: squeeze intensities into LOW,HIGH (e.g. 100,180) before the
    /// checkpoint's normalisation, imitating a washed-out scanner.
    #[arg(long, value_name = "LOW,HIGH", value_parser = parse_squeeze)]
    squeeze: Option<[u8; 2]>,
    /// Robustness check: raise intensities (0–1) to this power before the checkpoint's
    /// normalisation (e.g. 1.6: darker mid-tones, an underexposed or differently windowed
    /// scanner). Applied after --squeeze when both are given.
    #[arg(long, value_name = "GAMMA")]
    darken: Option<f64>,
    /// Score the network's own output, without the linear recalibration the checkpoint's
    /// sidecar carries (runs trained with `train.calibrate`).
    #[arg(long)]
    no_calibration: bool,
    /// Store the 95% interval of the validation errors in the checkpoint's sidecar, for
    /// `predict`'s readings: for checkpoints trained before training stored it. Only on
    /// the plain validation fold.
    #[arg(long, requires = "validation", conflicts_with_all = ["tta", "squeeze", "darken", "no_calibration"])]
    store_interval: bool,
    /// Where predictions.csv, metrics.json and the figures go [default: <checkpoint's directory>/evaluation].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print the metrics as one JSON object.
    #[arg(long)]
    json: bool,
}

fn parse_squeeze(s: &str) -> Result<[u8; 2], String> {
    let (lo, hi) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: expected LOW,HIGH"))?;
    let p = |v: &str| {
        v.trim()
            .parse::<u8>()
            .map_err(|_| format!("{v:?} is not 0–255"))
    };
    let (lo, hi) = (p(lo)?, p(hi)?);
    if lo >= hi {
        return Err(format!("{s:?}: LOW must be below HIGH"));
    }
    Ok([lo, hi])
}

pub fn run(args: EvaluateArgs, config: &Config) -> Result<()> {
    let EvaluateArgs {
        checkpoint,
        source,
        validation,
        tta,
        squeeze,
        darken,
        no_calibration,
        store_interval,
        out,
        json,
    } = args;
    let device = bone_age::runtime::init(&config.runtime)?;
    let mut model = Ensemble::load(&checkpoint, device)?;
    for w in &model.warnings {
        eprintln!("warning: {w}");
    }
    model.for_each_config(|c| {
        c.preprocess.squeeze = squeeze;
        c.preprocess.darken = darken;
    });
    model.first().meta.config.preprocess.validate()?;
    if no_calibration {
        model.without_calibration();
    }
    let ensemble = model.len() > 1;
    if ensemble && store_interval {
        bail!("--store-interval stores one checkpoint's interval: give one --checkpoint (an ensemble's is calibrated by `bone-age ensemble calibrate`)");
    }
    let data_dir = source
        .data_dir
        .clone()
        .unwrap_or_else(|| config.paths.data_dir.clone());
    let ckpt = model.first();
    let f = &ckpt.meta.config.folds;
    if ensemble && (validation || !source.chosen()) {
        let has_test = bone_age::evaluate::test_frame(&ckpt.meta.config, &data_dir)
            .map(|(set, _)| set.starts_with("test split"))
            .unwrap_or(false);
        if validation || !has_test {
            bail!(
                "an ensemble has no held-out fold of its own: each member trained on the others' \
                 validation folds. Score it on a labelled test split (--split test, --labels) or \
                 see its out-of-fold scores (`bone-age ensemble show`)"
            );
        }
    }
    let held_out = format!(
        "held-out fold {} of {} (the checkpoint's folds)",
        f.val_fold, f.n_folds
    );
    let (set, frame) = if validation {
        let frame = ckpt.meta.config.fold_frames(&data_dir)?.1;
        (held_out, frame)
    } else if source.chosen() {
        let ds = source.load(config)?.1;
        let mut set = format!("{}", ds.csv.display());
        if source.is_train_split() {
            set += " (the whole train split: it includes the images the checkpoint trained on)";
        }
        (set, ds.frame)
    } else {
        // Neither --split nor --labels: never the images it trained on.
        bone_age::evaluate::test_frame(&ckpt.meta.config, &data_dir)?
    };
    eprintln!("evaluating on {set}");
    let mut eval = bone_age::ensemble::evaluate(
        &model,
        &frame,
        &config.paths.cache_dir(),
        &EvalOptions {
            tta,
            ..Default::default()
        },
    )?;
    eval.set = set;
    let out = out.unwrap_or_else(|| {
        model
            .root
            .clone()
            .unwrap_or_else(|| {
                ckpt.path
                    .parent()
                    .unwrap_or(std::path::Path::new("."))
                    .to_path_buf()
            })
            .join("evaluation")
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    bone_age::evaluate::write_predictions(&eval, &out.join("predictions.csv"))?;
    let metrics = serde_json::to_vec_pretty(&eval)?;
    bone_age::files::atomic_write(&out.join("metrics.json"), |tmp| {
        std::fs::write(tmp, &metrics).map_err(|e| bone_age::Error::io(tmp, e))
    })?;
    let figures = bone_age::plot::write_evaluation_plots(&eval, &out)?;
    if store_interval {
        let mut meta = bone_age::checkpoint::read_meta(&ckpt.path)?;
        meta.interval = eval.interval;
        meta.raw_interval = eval
            .calibration
            .and_then(|c| bone_age::evaluate::interval_of(&eval.predictions, Some(&c)));
        let Some(iv) = meta.interval else {
            anyhow::bail!("no interval to store: an age model and at least 20 labelled validation images are needed");
        };
        let path = bone_age::checkpoint::sidecar(&ckpt.path);
        bone_age::files::atomic_write(&path, |tmp| bone_age::checkpoint::write_meta(&meta, tmp))?;
        eprintln!(
            "stored the 95% interval {:+.1} to {:+.1} months ({} images) in {}",
            iv.low,
            iv.high,
            iv.n,
            path.display()
        );
    }
    if json {
        println!("{}", serde_json::to_string(&eval)?);
        return Ok(());
    }
    println!("{eval}");
    println!(
        "predictions       {}",
        out.join("predictions.csv").display()
    );
    for f in figures {
        println!("figure            {}", f.display());
    }
    Ok(())
}
