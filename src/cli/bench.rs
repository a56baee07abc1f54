//! `bone-age bench`: data-pipeline throughput and the training step, each against its
//! Python peer in the same run.
use std::path::PathBuf;

use anyhow::{bail, Result};
use bone_age::bench::step::StepOptions;
use bone_age::Config;
use clap::Subcommand;

use super::parse_hw;

#[derive(Subcommand)]
pub enum BenchCommand {
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
    /// The m46 training step and inference against the same net in PyTorch
    /// (scripts/bench_train_peer.py), with a breakdown by phase.
    ///
    /// Synthetic images in a u8 cache with the recipe's margin, batched by the training
    /// loader (augmentation off); the recipe's Adam (2e-5, betas 0.5/0.999). Threads are
    /// --threads (default: libtorch's), the same for the peer. On --device cuda the
    /// `[train]` switches apply to both (--set train.autocast=true, train.channels_last).
    Train {
        /// The network's input C,H,W (1,500,375 is the recipe's).
        #[arg(long, value_name = "C,H,W", default_value = "1,128,128", value_parser = parse_shape)]
        input_shape: [i64; 3],
        /// Images per step.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Timed steps, after 3 untimed warm-up steps.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Ours and the peer alternately, this many times; the medians are reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Skip the Python peer.
        #[arg(long)]
        no_peer: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

fn parse_shape(s: &str) -> Result<[i64; 3], String> {
    let v: Vec<i64> = s
        .split(',')
        .map(|p| p.trim().parse::<i64>().ok().filter(|&v| v > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("{s:?}: expected C,H,W of positive integers, e.g. 1,128,128"))?;
    <[i64; 3]>::try_from(v).map_err(|_| format!("{s:?}: expected three values C,H,W"))
}

pub fn run(cmd: BenchCommand, config: &Config) -> Result<()> {
    let python = std::env::var_os("BONE_AGE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| config.paths.cache_dir().join("venv"))
        .join("bin/python");
    let scripts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let check_python = |no_peer: bool| -> Result<()> {
        if !no_peer && !python.exists() {
            bail!(
                "the peer needs the project venv ({} not found): run `make setup`, or pass --no-peer",
                python.display()
            );
        }
        Ok(())
    };
    match cmd {
        BenchCommand::Pipeline {
            data_dir,
            fit,
            epoch_images,
            no_peer,
            json,
        } => {
            check_python(no_peer)?;
            let mut pre = config.preprocess.clone();
            if fit.is_some() {
                pre.fit = fit;
            }
            let script = scripts.join("bench_peer.py");
            let peer = (!no_peer).then_some((python.as_path(), script.as_path()));
            let report = bone_age::bench::pipeline(&data_dir, &pre, epoch_images, peer)?;
            print(&report, json)
        }
        BenchCommand::Train {
            input_shape,
            batch,
            steps,
            rounds,
            no_peer,
            json,
        } => {
            check_python(no_peer)?;
            let t = &config.train;
            let options = StepOptions {
                rounds,
                device: config.runtime.device.resolve()?,
                autocast: t.autocast,
                channels_last: t.channels_last,
                cudnn_benchmark: t.cudnn_benchmark,
                input: input_shape,
                batch,
                steps,
                warmup: 3,
                threads: config.runtime.threads,
                seed: config.runtime.seed,
            };
            let script = scripts.join("bench_train_peer.py");
            let peer = (!no_peer).then_some((python.as_path(), script.as_path()));
            let report = bone_age::bench::step::train_step(&options, peer)?;
            print(&report, json)
        }
    }
}

fn print<R: serde::Serialize + std::fmt::Display>(report: &R, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
