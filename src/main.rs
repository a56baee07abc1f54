//! The `bone-age` command line: a thin clap front end over the library.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use bone_age::dataset::{Dataset, Layout, Split};
use bone_age::summary::Summary;
use bone_age::{
    Checkpoint, Config, Doctor, ImageCache, ModelConfig, PhantomSpec, Target, TrainOptions, M46,
};
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

mod cli;

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
    /// Download a dataset from Kaggle or a URL, resumably, and extract it.
    #[command(subcommand)]
    Download(DownloadCommand),
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
    Train(TrainArgs),
    /// Score a checkpoint on a labelled set: MAE and median absolute error (months), or
    /// accuracy for a sex model; writes predictions.csv, metrics.json and, for an age
    /// model, scatter.png (predicted vs true) and residuals.png (Bland–Altman style).
    Evaluate(EvaluateArgs),
    /// Predict the bone age of radiographs (any format the pipeline reads).
    Predict {
        /// Image files.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// The patient's sex, M or F (required by models trained with sex as an input).
        #[arg(long, value_parser = parse_sex)]
        sex: Option<bool>,
    },
    /// Figures as PNG or SVG files: data, augmentation, training curves, evaluation.
    #[command(subcommand)]
    Plot(cli::plot::PlotCommand),
    /// Benchmarks against a named peer on the same data.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Args)]
struct TrainArgs {
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

#[derive(Args)]
struct EvaluateArgs {
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
pub(crate) struct DataSource {
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
enum TargetArg {
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

fn parse_sex(s: &str) -> Result<bool, String> {
    match s.to_ascii_uppercase().as_str() {
        "M" | "MALE" => Ok(true),
        "F" | "FEMALE" => Ok(false),
        _ => Err(format!("{s:?}: expected M or F")),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LayoutArg {
    Recipe,
    Kaggle,
}

#[derive(Subcommand)]
enum DownloadCommand {
    /// A Kaggle dataset (or one file of it) through the Kaggle API.
    ///
    /// Credentials as the kaggle CLI finds them: KAGGLE_USERNAME/KAGGLE_KEY, else
    /// $KAGGLE_CONFIG_DIR/kaggle.json, else ~/.kaggle/kaggle.json.
    Kaggle {
        /// OWNER/DATASET.
        #[arg(default_value = "kmader/rsna-bone-age")]
        dataset: String,
        /// One file of the dataset instead of the whole archive.
        #[arg(long)]
        file: Option<String>,
        /// Target directory (replaced only once the download is complete).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// API host.
        #[arg(long, default_value = "https://www.kaggle.com", value_name = "URL")]
        api_base: String,
        /// Expected SHA-256 of the downloaded file.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
    /// Any URL: a zip is extracted, another file is saved as is.
    Url {
        url: String,
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Expected SHA-256 of the downloaded file.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
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
    pub(crate) fn load(&self, config: &Config) -> Result<(Option<Layout>, Dataset)> {
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
        Command::Download(cmd) => download(cmd, &config)?,
        Command::Model {
            input_shape,
            sex_input,
            model_type,
        } => model(input_shape, sex_input, model_type)?,
        Command::Train(args) => train(args, config)?,
        Command::Evaluate(args) => evaluate(args, &config)?,
        Command::Predict {
            images,
            checkpoint,
            sex,
        } => predict(&images, &checkpoint, sex, &config)?,
        Command::Plot(cmd) => cli::plot::run(cmd, &config)?,
        Command::Bench(cmd) => bench(cmd, &config)?,
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

fn train(args: TrainArgs, mut config: Config) -> Result<()> {
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

fn evaluate(args: EvaluateArgs, config: &Config) -> Result<()> {
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

fn predict(
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

fn download(cmd: DownloadCommand, config: &Config) -> Result<()> {
    use bone_age::download;
    let to = match cmd {
        DownloadCommand::Kaggle {
            dataset,
            file,
            to,
            api_base,
            sha256,
        } => {
            let creds = download::Credentials::find()?;
            let opts = download::Options {
                sha256,
                ..Default::default()
            };
            download::kaggle(&api_base, &dataset, file.as_deref(), &to, &creds, &opts)?
        }
        DownloadCommand::Url { url, to, sha256 } => download::url(
            &url,
            &to,
            &download::Options {
                sha256,
                ..Default::default()
            },
        )?,
    };
    println!("downloaded to {}", to.display());
    match Dataset::from_dir(&to, Split::Train, config.data.layout) {
        Ok((layout, ds)) => println!("{}", Summary::of(&ds, Some(layout))?),
        Err(_) => {
            let mut names: Vec<String> = std::fs::read_dir(&to)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            println!(
                "no dataset layout recognised; contents: {}",
                names.join(", ")
            );
        }
    }
    Ok(())
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
