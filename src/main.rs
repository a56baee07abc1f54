//! The `bone-age` command line: a thin clap front end over the library.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use bone_age::{Config, Doctor, ModelConfig, M46};
use clap::{ArgAction, Args, Parser, Subcommand};

mod cli;

use cli::train::TargetArg;

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
    /// Datasets: inspect one, generate the built-in phantom set, prebuild the image cache.
    #[command(subcommand)]
    Data(cli::data::DataCommand),
    /// Download a dataset from Kaggle or a URL, resumably, and extract it.
    #[command(subcommand)]
    Download(cli::download::DownloadCommand),
    /// Print the m46 layer table and parameter count for an input shape.
    Model {
        /// Input as C,H,W.
        #[arg(long, default_value = "1,500,375", value_parser = parse_shape)]
        input_shape: [i64; 3],
        /// Sex (±1) joins the flattened features.
        #[arg(long)]
        sex_input: bool,
        /// age (regression) or sex (the recipe's gender model).
        #[arg(long, value_enum, default_value_t = TargetArg::Age)]
        model_type: TargetArg,
    },
    /// Train m46 (the recipe by default; see configs/) into a run directory.
    ///
    /// Writes config.toml, metrics.csv, curves.png, TensorBoard events, best/last
    /// checkpoints (safetensors + JSON) and the optimizer state into --out. A killed run continues
    /// with --resume.
    Train(cli::train::TrainArgs),
    /// Score a checkpoint on a labelled set: MAE (months) or accuracy, with predictions and figures.
    ///
    /// Prints the MAE and median absolute error in months, or the accuracy for a sex
    /// model. Writes predictions.csv, metrics.json and, for an age model, scatter.png
    /// (predicted vs true) and residuals.png (Bland–Altman style).
    Evaluate(cli::evaluate::EvaluateArgs),
    /// Predict the bone age of radiographs, or read them clinically against the
    /// Greulich–Pyle reference.
    ///
    /// Without an age, prints one line per image: path, months, years and months. With
    /// --sex and --age (or --birth and --exam), prints the clinical reading: bone age with
    /// the model's 95% interval, chronological age, BA − CA, the Brush Foundation mean and
    /// SD, the Z-score and the determination (delayed, normal, advanced, indeterminate);
    /// --report writes it as a printable HTML page. --visits reads a CSV of visits in
    /// batch. Readings are kept to 0–228 months (flagged when the network's output was
    /// outside), and images that cannot show a hand are warned about. An image that
    /// cannot be read is reported and the others are still predicted; the exit code is
    /// then 1 (with --visits: only when no visit could be read).
    Predict(cli::predict::PredictArgs),
    /// An explanation map of one radiograph: where in the network's input the reading
    /// comes from.
    ///
    /// occlusion slides a patch of the image's mean over the input (in batches) and maps
    /// how much the predicted age changes when each part is hidden (months; red: the part
    /// makes the hand read older); grad-cam weights a convolutional block's activations
    /// (by default the last one at least 10 cells across) by the gradient of the
    /// prediction (relative units). The figure overlays the map on the network's input
    /// with a colour bar; --json prints the map's grid and its top regions. An ensemble's
    /// map is its members' mean.
    Explain(cli::explain::ExplainArgs),
    /// K-fold ensembles: calibrate the 95% interval on the out-of-fold predictions, or show it.
    #[command(subcommand)]
    Ensemble(cli::ensemble::EnsembleCommand),
    /// Figures as PNG or SVG files: data, augmentation, training curves, evaluation.
    #[command(subcommand)]
    Plot(cli::plot::PlotCommand),
    /// Benchmarks against a named peer on the same data.
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
}

fn parse_shape(s: &str) -> Result<[i64; 3], String> {
    let v: Vec<i64> = s
        .split([',', 'x'])
        .map(|p| {
            p.trim()
                .parse()
                .map_err(|_| format!("{s:?}: expected C,H,W"))
        })
        .collect::<Result<_, _>>()?;
    <[i64; 3]>::try_from(v).map_err(|_| format!("{s:?}: expected three numbers C,H,W"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let config = resolve_config(Config::default(), &cli.global)?;
    if !matches!(cli.command, Command::Doctor { .. }) {
        config.validate()?;
    }
    match cli.command {
        Command::Doctor { json } => {
            let report = Doctor::collect(&config.paths, cli.global.config.as_deref());
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Config => print!("{}", config.to_toml()),
        Command::Data(cmd) => cli::data::run(cmd, &config)?,
        Command::Download(cmd) => cli::download::run(cmd, &config)?,
        Command::Model {
            input_shape,
            sex_input,
            model_type,
        } => model(input_shape, sex_input, model_type)?,
        Command::Train(args) => {
            cli::train::run(args, config, |base| resolve_config(base, &cli.global))?
        }
        Command::Evaluate(args) => cli::evaluate::run(args, &config)?,
        Command::Predict(args) => return cli::predict::predict(args, &config),
        Command::Explain(args) => cli::explain::run(args, &config)?,
        Command::Ensemble(cmd) => cli::ensemble::run(cmd, &config)?,
        Command::Plot(cmd) => cli::plot::run(cmd, &config)?,
        Command::Bench(cmd) => cli::bench::run(cmd, &config)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn model(input: [i64; 3], sex_input: bool, target: TargetArg) -> Result<()> {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let m = M46::new(
        &vs.root(),
        input,
        ModelConfig {
            target: target.into(),
            sex_input,
            ..Default::default()
        },
    )?;
    println!("{:<28} {:>16} {:>12}", "layer", "output", "parameters");
    for (name, shape, params) in m.layer_table() {
        println!("{name:<28} {shape:>16} {params:>12}");
    }
    println!(
        "{:<28} {:>16} {:>12}",
        "total",
        "",
        bone_age::model::count_parameters(&vs)
    );
    Ok(())
}

/// `base` (the defaults, or a resumed run's saved config) < --config file < --set
/// KEY=VALUE < dedicated flags.
fn resolve_config(mut config: Config, g: &GlobalArgs) -> Result<Config> {
    if let Some(file) = &g.config {
        config.overlay_file(file)?;
    }
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

/// The error and its causes, each cause once: library errors already quote their
/// source ("path: No such file or directory"), which `{:#}` would repeat.
fn error_chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text = format!("{text}: {c}");
        }
    }
    text
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
