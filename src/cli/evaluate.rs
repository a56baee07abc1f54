//! `bone-age evaluate` (a checkpoint on a labelled set: metrics, predictions, figures)
//! and `bone-age predict` (single radiographs).
use std::path::PathBuf;

use anyhow::{Context, Result};
use bone_age::{Checkpoint, Config, Target};
use clap::Args;

use super::data::DataSource;

#[derive(Args)]
pub struct EvaluateArgs {
    /// A `*.safetensors` checkpoint with its `.json` sidecar.
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    #[command(flatten)]
    source: DataSource,
    /// The checkpoint's held-out validation fold of the train split instead of --split.
    #[arg(long, conflicts_with_all = ["labels", "split"])]
    validation: bool,
    /// Average this many augmented passes with the plain one.
    #[arg(long, default_value_t = 0)]
    tta: usize,
    /// Robustness check: squeeze intensities into LOW,HIGH (e.g. 100,180) before the
    /// checkpoint's normalisation, imitating a washed-out scanner.
    #[arg(long, value_name = "LOW,HIGH", value_parser = parse_squeeze)]
    squeeze: Option<[u8; 2]>,
    /// Where predictions.csv, metrics.json and the figures go [default: <checkpoint dir>/evaluation].
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

pub fn parse_sex(s: &str) -> Result<bool, String> {
    match s.to_ascii_uppercase().as_str() {
        "M" | "MALE" => Ok(true),
        "F" | "FEMALE" => Ok(false),
        _ => Err(format!("{s:?}: expected M or F")),
    }
}

pub fn run(args: EvaluateArgs, config: &Config) -> Result<()> {
    let EvaluateArgs {
        checkpoint,
        source,
        validation,
        tta,
        squeeze,
        out,
        json,
    } = args;
    let device = bone_age::runtime::init(config)?;
    let mut ckpt = Checkpoint::load(&checkpoint, device)?;
    ckpt.meta.config.preprocess.squeeze = squeeze;
    let frame = if validation {
        let data_dir = source
            .data_dir
            .clone()
            .unwrap_or_else(|| config.paths.data_dir.clone());
        bone_age::train::split_frames(&ckpt.meta.config, &data_dir)?.1
    } else {
        source.load(config)?.1.frame
    };
    let eval = bone_age::evaluate::evaluate(&ckpt, &frame, &config.paths.cache_dir(), tta, 32)?;
    let out = out.unwrap_or_else(|| {
        checkpoint
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("evaluation")
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    bone_age::evaluate::write_predictions(&eval, &out.join("predictions.csv"))?;
    std::fs::write(out.join("metrics.json"), serde_json::to_vec_pretty(&eval)?)?;
    let figures = bone_age::evaluate::write_plots(&eval, &out)?;
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

pub fn predict(
    images: &[PathBuf],
    checkpoint: &std::path::Path,
    sex: Option<bool>,
    config: &Config,
) -> Result<()> {
    let device = bone_age::runtime::init(config)?;
    let ckpt = Checkpoint::load(checkpoint, device)?;
    for path in images {
        let y = bone_age::evaluate::predict_file(&ckpt, path, sex)?;
        match ckpt.model.config.target {
            Target::Age => println!(
                "{}\t{y:.1} months\t{}",
                path.display(),
                bone_age::evaluate::years_months(y)
            ),
            Target::Sex => println!("{}\tP(male) = {y:.3}", path.display()),
        }
    }
    Ok(())
}
