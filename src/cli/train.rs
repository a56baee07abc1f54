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
    /// Continue the run in --out from its last checkpoint, with the configuration it saved.
    /// --epochs extends it (e.g. a finished 16-epoch run to 30); --device and --threads
    /// may change; flags that would change what it learns are refused.
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
    /// Tests only: kill:N or enospc:N at the N-th checkpoint-write step.
    #[arg(long, hide = true)]
    inject_fault: Option<bone_age::commit::Fault>,
}

/// Keys a resumed run may change: where and how fast it runs, and how long.
const RESUMABLE: [&str; 4] = [
    "train.epochs",
    "runtime.device",
    "runtime.threads",
    "paths.cache_dir",
];

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

/// `resolve` applies the global flags (--config, --set, --device, …) to a base config.
pub fn run(
    args: TrainArgs,
    config: Config,
    resolve: impl Fn(Config) -> Result<Config>,
) -> Result<()> {
    let run_dir = args.out.clone().unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        config.paths.runs_dir.join(format!("run-{stamp}"))
    });
    let saved_path = run_dir.join(bone_age::run::CONFIG);
    let config = if args.resume && saved_path.is_file() {
        // The saved config, with only the flags given now applied over it.
        let saved = Config::load(Some(&saved_path))?;
        let resumed = apply_flags(&args, resolve(saved.clone())?);
        let refused: Vec<String> = saved
            .diff(&resumed)
            .into_iter()
            .filter(|(key, _, _)| !RESUMABLE.contains(&key.as_str()))
            .map(|(key, was, now)| format!("{key} = {was} in the run, {now} asked"))
            .collect();
        if !refused.is_empty() {
            anyhow::bail!(
                "--resume continues {} with the configuration it saved; these flags would change \
                 what it learns: {}. Drop them, or start a new run with another --out",
                run_dir.display(),
                refused.join("; ")
            );
        }
        for (key, was, now) in saved.diff(&resumed) {
            eprintln!("note: resuming with {key} = {now} (the run had {was})");
        }
        resumed
    } else {
        if args.resume {
            eprintln!(
                "note: {} holds no run yet; starting it from epoch 1",
                run_dir.display()
            );
        }
        apply_flags(&args, config)
    };
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| config.paths.data_dir.clone());
    eprintln!("training on {} → {}", data_dir.display(), run_dir.display());
    let options = TrainOptions {
        resume: args.resume,
        stop_after_epoch: args.stop_after_epoch,
        fault: args.inject_fault,
        progress: true,
    };
    let mut trained = 0;
    let summary = bone_age::train(&config, &data_dir, &run_dir, &options, |m| {
        trained += 1;
        println!("{m}")
    })?;
    if trained == 0 {
        let done = summary.history.last().map_or(0, |m| m.epoch);
        println!(
            "{} already finished {done} of {} epochs; nothing to train (pass --epochs N > {done} to extend it)",
            run_dir.display(),
            config.train.epochs
        );
        return Ok(());
    }
    println!(
        "best: {}\nlast: {}",
        summary.best.display(),
        summary.last.display()
    );
    Ok(())
}

/// The train subcommand's own flags over `config`.
fn apply_flags(args: &TrainArgs, mut config: Config) -> Config {
    if let Some(e) = args.epochs {
        config.train.epochs = e;
    }
    if let Some(lr) = args.lr {
        config.train.lr = lr;
    }
    if let Some(b) = args.batch_size {
        config.loader.batch_size = b;
    }
    if let Some(t) = args.model_type {
        config.model.target = t.into();
    }
    config.model.sex_input |= args.sex_input;
    config
}
