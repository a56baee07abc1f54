//! `bone-age train`: its flags over the resolved config, the run directory, `--resume`;
//! with `--folds K`, one run directory per fold and the ensemble's calibration.
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
    /// Train a K-fold ensemble: one ordinary run per fold in --out/fold-1 … fold-K (fold k
    /// holds out fold k of K), then calibrate its 95% interval on the out-of-fold
    /// predictions (--out/ensemble.json, oof.csv). --resume skips finished folds.
    #[arg(long, value_name = "K", requires = "out")]
    folds: Option<usize>,
    /// With --folds: train fold k alone (1..K), e.g. as one job of a cluster array; then
    /// `bone-age ensemble calibrate --out` once every fold has finished.
    #[arg(long, value_name = "k", requires = "folds")]
    fold: Option<usize>,
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
    let Some(k_total) = args.folds else {
        return run_one(&args, config, None, &resolve);
    };
    bone_age::ensemble::kfold::check_folds(k_total, args.fold)?;
    let root = args.out.clone().expect("clap requires --out with --folds");
    if config.folds.method == bone_age::FoldMethod::Contiguous {
        eprintln!(
            "note: contiguous folds follow the CSV's row order; where the order carries \
             structure (RSNA's first third holds twice the under-4s of the rest) the folds' \
             errors are not exchangeable and the ensemble's interval over- or under-covers: \
             --set folds.method=\"stratified\" deals them by age at random (docs/ensembles.md)"
        );
    }
    let which: Vec<usize> = match args.fold {
        Some(k) => vec![k],
        None => (1..=k_total).collect(),
    };
    for &k in &which {
        eprintln!("── fold {k} of {k_total} ──");
        run_one(&args, config.clone(), Some((k_total, k)), &resolve)?;
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| config.paths.data_dir.clone());
    let unfinished: Vec<usize> = bone_age::ensemble::fold_dirs(&root)
        .into_iter()
        .filter(|(_, d)| {
            let epochs = bone_age::Config::load(Some(&d.join(bone_age::run::CONFIG)))
                .map_or(0, |c| c.train.epochs);
            !bone_age::ensemble::kfold::is_finished(d, epochs)
        })
        .map(|(k, _)| k)
        .collect();
    let trained = bone_age::ensemble::fold_dirs(&root).len();
    if trained < k_total || !unfinished.is_empty() {
        println!(
            "{} of {k_total} folds have finished; when all have: bone-age ensemble calibrate {} --data-dir {}",
            trained - unfinished.len(),
            root.display(),
            data_dir.display()
        );
        return Ok(());
    }
    let device = bone_age::runtime::init(&config.runtime)?;
    super::ensemble::calibrate(&root, &data_dir, &config, device, 0, true)?;
    Ok(())
}

/// One run: a plain one, or fold k of K (`fold`) in `--out/fold-k`.
fn run_one(
    args: &TrainArgs,
    config: Config,
    fold: Option<(usize, usize)>,
    resolve: &impl Fn(Config) -> Result<Config>,
) -> Result<()> {
    let as_fold = |c: Config| -> Result<Config> {
        Ok(match fold {
            Some((n, k)) => bone_age::ensemble::fold_config(&c, n, k)?,
            None => c,
        })
    };
    let run_dir = match (fold, &args.out) {
        (Some((_, k)), Some(out)) => bone_age::ensemble::fold_dir(out, k),
        _ => args.out.clone().unwrap_or_else(|| {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            config.paths.runs_dir.join(format!("run-{stamp}"))
        }),
    };
    let saved_path = run_dir.join(bone_age::run::CONFIG);
    let config = if args.resume && saved_path.is_file() {
        // The saved config, with only the flags given now applied over it.
        let saved = Config::load(Some(&saved_path))?;
        let resumed = as_fold(apply_flags(args, resolve(saved.clone())?))?;
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
        as_fold(apply_flags(args, config))?
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
