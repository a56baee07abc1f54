//! The `bone-age` command line: a thin clap front end over the library.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use bone_age::{Config, Doctor};
use clap::{ArgAction, Args, Parser, Subcommand};

/// Pediatric bone age from left-hand radiographs: the m46 recipe
/// (Iglovikov et al., DLMIA 2018; RSNA 2017 challenge data) in Rust on libtorch.
#[derive(Parser)]
#[command(name = "bone-age", version, propagate_version = true)]
#[command(
    after_help = "Configuration precedence: built-in defaults < --config FILE < flags.\n\
    `bone-age config` prints the resolved configuration."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct GlobalArgs {
    /// TOML config file; its values override the defaults.
    #[arg(long, global = true, value_name = "FILE", env = "BONE_AGE_CONFIG")]
    config: Option<PathBuf>,
    /// Device: auto (CUDA if libtorch sees one), cpu, cuda or cuda:N [config: runtime.device].
    #[arg(long, global = true, value_name = "DEVICE")]
    device: Option<String>,
    /// libtorch intra-op threads, 0 = one per core [config: runtime.threads].
    #[arg(long, global = true, value_name = "N")]
    threads: Option<String>,
    /// Random seed [config: runtime.seed].
    #[arg(long, global = true, value_name = "SEED")]
    seed: Option<String>,
    /// Set any config key, e.g. --set paths.runs_dir=/scratch/runs (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Check the installation: torch version, CUDA devices, threads and the paths in use.
    Doctor {
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print the resolved configuration (defaults < --config < flags) as TOML.
    Config,
    /// [not available yet] Inspect a dataset: layout, counts, missing images, ages by sex.
    Data(Planned),
    /// [not available yet] Download the RSNA data from Kaggle or a URL.
    Download(Planned),
    /// [not available yet] Print the m46 layer table and parameter count.
    Model(Planned),
    /// [not available yet] Train m46 on a dataset.
    Train(Planned),
    /// [not available yet] Score a checkpoint on a labelled dataset.
    Evaluate(Planned),
    /// [not available yet] Predict the bone age of radiographs.
    Predict(Planned),
    /// [not available yet] Benchmark the data pipeline against OpenCV.
    Bench(Planned),
}

/// Accepts any arguments, so that a planned command reports itself instead of
/// failing on its future flags.
#[derive(Args)]
struct Planned {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let config = resolve_config(&cli.global)?;
    match cli.command {
        Command::Doctor { json } => {
            let report = Doctor::collect(&config, cli.global.config.as_deref());
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Config => print!("{}", config.to_toml()),
        Command::Data(_) => return Ok(not_yet("data")),
        Command::Download(_) => return Ok(not_yet("download")),
        Command::Model(_) => return Ok(not_yet("model")),
        Command::Train(_) => return Ok(not_yet("train")),
        Command::Evaluate(_) => return Ok(not_yet("evaluate")),
        Command::Predict(_) => return Ok(not_yet("predict")),
        Command::Bench(_) => return Ok(not_yet("bench")),
    }
    Ok(ExitCode::SUCCESS)
}

/// defaults < --config file < --set KEY=VALUE < dedicated flags.
fn resolve_config(g: &GlobalArgs) -> Result<Config> {
    let mut config = Config::load(g.config.as_deref())?;
    for kv in &g.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        config.set(k.trim(), v.trim())?;
    }
    for (key, flag) in [
        ("runtime.device", &g.device),
        ("runtime.threads", &g.threads),
        ("runtime.seed", &g.seed),
    ] {
        if let Some(v) = flag {
            config.set(key, v)?;
        }
    }
    Ok(config)
}

fn not_yet(command: &str) -> ExitCode {
    eprintln!(
        "bone-age {command}: not available yet in bone-age {}. Nothing was run.",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
