//! The `bone-age` command line: a thin clap front end over the library.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use bone_age::dataset::{Dataset, Layout, Split};
use bone_age::summary::Summary;
use bone_age::{Config, Doctor, ImageCache, PhantomSpec};
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

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
    Data(DataCommand),
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
    /// Benchmarks against a named peer on the same data.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand)]
enum DataCommand {
    /// Layout, row/image/missing counts and the bone-age distribution by sex.
    ///
    /// Either --data-dir (recipe or Kaggle layout, detected) or --labels CSV --images DIR
    /// (any of: id,boneage,male | Case ID,Sex | Case ID,Sex,Ground truth bone age (months)).
    Summary {
        #[command(flatten)]
        source: DataSource,
        /// Print one JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Generate the synthetic phantom dataset (recipe layout) into --out.
    Phantom {
        /// Output directory (train.csv, train/, test.csv, test/).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Training images.
        #[arg(long, default_value_t = PhantomSpec::default().n_train)]
        n_train: usize,
        /// Test images.
        #[arg(long, default_value_t = PhantomSpec::default().n_test)]
        n_test: usize,
        /// Image size as HxW.
        #[arg(long, default_value = "160x128", value_parser = parse_hw)]
        size: [u32; 2],
    },
    /// Decode and preprocess every image of a split once into the cache (with progress).
    Cache {
        #[command(flatten)]
        source: DataSource,
    },
}

#[derive(Args)]
struct DataSource {
    /// Dataset root [config: paths.data_dir].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Which split of --data-dir.
    #[arg(long, value_enum, default_value_t = SplitArg::Train)]
    split: SplitArg,
    /// Force a layout instead of detecting it [config: data.layout].
    #[arg(long, value_enum)]
    layout: Option<LayoutArg>,
    /// A labels CSV (instead of --data-dir), with --images.
    #[arg(
        long,
        value_name = "CSV",
        requires = "images",
        conflicts_with = "data_dir"
    )]
    labels: Option<PathBuf>,
    /// The folder of <id>.png images for --labels.
    #[arg(long, value_name = "DIR", requires = "labels")]
    images: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Test,
}

#[derive(Clone, Copy, ValueEnum)]
enum LayoutArg {
    Recipe,
    Kaggle,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Data-pipeline throughput against OpenCV + albumentations (scripts/bench_peer.py).
    ///
    /// Measures decode+crop+scale on one core and on all cores, the cache build, and an
    /// epoch read from the cache with augmentation on the CPU, then runs the peer on the
    /// same images and prints the ratios.
    Pipeline {
        /// Dataset root in the recipe layout.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// Fit raw radiographs into HxW first (e.g. 2080x1600 for rsna-raw-sample).
        #[arg(long, value_name = "HxW", value_parser = parse_hw)]
        fit: Option<[u32; 2]>,
        /// Images to read from the cache for the epoch figure.
        #[arg(long, default_value_t = 2000)]
        epoch_images: usize,
        /// Skip the Python peer.
        #[arg(long)]
        no_peer: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn parse_hw(s: &str) -> Result<[u32; 2], String> {
    let (h, w) = s
        .split_once(['x', 'X', ','])
        .ok_or_else(|| format!("{s:?}: expected HxW, e.g. 160x128"))?;
    let p = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("{s:?}: {v:?} is not a positive integer"))
    };
    Ok([p(h)?, p(w)?])
}

impl DataSource {
    fn load(&self, config: &Config) -> Result<(Option<Layout>, Dataset)> {
        if let (Some(csv), Some(images)) = (&self.labels, &self.images) {
            return Ok((None, Dataset::from_csv(csv, images)?));
        }
        let root = self
            .data_dir
            .clone()
            .unwrap_or_else(|| config.paths.data_dir.clone());
        let split = match self.split {
            SplitArg::Train => Split::Train,
            SplitArg::Test => Split::Test,
        };
        let layout = match self.layout {
            Some(LayoutArg::Recipe) => Some(Layout::Recipe),
            Some(LayoutArg::Kaggle) => Some(Layout::Kaggle),
            None => config.data.layout,
        };
        let (layout, ds) = Dataset::from_dir(&root, split, layout)?;
        Ok((Some(layout), ds))
    }
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
        Command::Data(cmd) => data(cmd, &config)?,
        Command::Download(_) => return Ok(not_yet("download")),
        Command::Model(_) => return Ok(not_yet("model")),
        Command::Train(_) => return Ok(not_yet("train")),
        Command::Evaluate(_) => return Ok(not_yet("evaluate")),
        Command::Predict(_) => return Ok(not_yet("predict")),
        Command::Bench(cmd) => bench(cmd, &config)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn data(cmd: DataCommand, config: &Config) -> Result<()> {
    match cmd {
        DataCommand::Summary { source, json } => {
            let (layout, ds) = source.load(config)?;
            let summary = Summary::of(&ds, layout)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!("{summary}");
            }
        }
        DataCommand::Phantom {
            out,
            n_train,
            n_test,
            size,
        } => {
            let spec = PhantomSpec {
                n_train,
                n_test,
                size,
                seed: config.runtime.seed,
            };
            bone_age::phantom::write_dataset(&out, &spec)?;
            println!(
                "wrote {n_train} + {n_test} phantoms ({}×{}) to {}",
                size[0],
                size[1],
                out.display()
            );
        }
        DataCommand::Cache { source } => {
            let (_, ds) = source.load(config)?;
            let cache = ImageCache::open(&ds.frame, &config.preprocess, &config.paths.cache_dir())?;
            let [h, w] = cache.geometry.cached;
            println!(
                "{:?} {} images of {h}×{w}: {}",
                cache.source,
                cache.len(),
                cache.path.display()
            );
        }
    }
    Ok(())
}

fn bench(cmd: BenchCommand, config: &Config) -> Result<()> {
    let BenchCommand::Pipeline {
        data_dir,
        fit,
        epoch_images,
        no_peer,
        json,
    } = cmd;
    let mut pre = config.preprocess.clone();
    if fit.is_some() {
        pre.fit = fit;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_peer.py");
    let python = std::env::var_os("BONE_AGE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| config.paths.cache_dir().join("venv"))
        .join("bin/python");
    if !no_peer && !python.exists() {
        bail!(
            "the peer needs the project venv ({} not found): run `make setup`, or pass --no-peer",
            python.display()
        );
    }
    let peer = (!no_peer).then_some((python.as_path(), script.as_path()));
    let report = bone_age::bench::pipeline(&data_dir, &pre, epoch_images, peer)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
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
