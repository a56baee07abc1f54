//! `bone-age bench`: data-pipeline throughput against the Python peer on the same images.
use std::path::PathBuf;

use anyhow::{bail, Result};
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
}

pub fn run(cmd: BenchCommand, config: &Config) -> Result<()> {
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
