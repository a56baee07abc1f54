//! `bone-age train`: its flags over the resolved config, the run directory, `--resume`.
use std::path::PathBuf;

use anyhow::Result;
use bone_age::{Config, Target, TrainOptions};
use clap::{Args, ValueEnum};

#[derive(Args)]
pub struct TrainArgs {
    /// Dataset root (recipe or Kaggle layout) [config: paths.data_dir].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Run directory [default: <paths.runs_dir>/<timestamp>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long, requires = "out")]
    resume: bool,
    /// Epochs [config: train.epochs].
    #[arg(long)]
    epochs: Option<usize>,
    /// Learning rate [config: train.lr].
    #[arg(long)]
    lr: Option<f64>,
    /// Batch size [config: loader.batch_size].
    #[arg(long)]
    batch_size: Option<usize>,
    /// age or sex [config: model.target].
    #[arg(long, value_enum)]
    model_type: Option<TargetArg>,
    /// Sex as an input [config: model.sex_input].
    #[arg(long)]
    sex_input: bool,
    #[arg(long, hide = true)]
    stop_after_epoch: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TargetArg {
    Age,
    Sex,
}

impl From<TargetArg> for Target {
    fn from(t: TargetArg) -> Target {
        match t {
            TargetArg::Age => Target::Age,
            TargetArg::Sex => Target::Sex,
        }
    }
}

pub fn run(args: TrainArgs, mut config: Config) -> Result<()> {
    let TrainArgs {
        data_dir,
        out,
        resume,
        epochs,
        lr,
        batch_size,
        model_type,
        sex_input,
        stop_after_epoch,
    } = args;
    if let Some(e) = epochs {
        config.train.epochs = e;
    }
    if let Some(lr) = lr {
        config.train.lr = lr;
    }
    if let Some(b) = batch_size {
        config.loader.batch_size = b;
    }
    if let Some(t) = model_type {
        config.model.target = t.into();
    }
    config.model.sex_input |= sex_input;
    let data_dir = data_dir.unwrap_or_else(|| config.paths.data_dir.clone());
    let run_dir = out.unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        config.paths.runs_dir.join(format!("run-{stamp}"))
    });
    if resume {
        let saved = Config::load(Some(&run_dir.join("config.toml")))?;
        if saved != config {
            eprintln!(
                "note: resuming with the configuration saved in {}",
                run_dir.join("config.toml").display()
            );
        }
        config = saved;
    }
    eprintln!("training on {} → {}", data_dir.display(), run_dir.display());
    let options = TrainOptions {
        resume,
        stop_after_epoch,
        progress: true,
    };
    let summary = bone_age::train(&config, &data_dir, &run_dir, &options, |m| println!("{m}"))?;
    println!(
        "best: {}\nlast: {}",
        summary.best.display(),
        summary.last.display()
    );
    Ok(())
}
