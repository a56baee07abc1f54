//! `bone-age plot …`: the library's figures as PNG or SVG files (by the --out extension).
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use bone_age::plot::{self, Plot};
use bone_age::Config;
use clap::Subcommand;

use super::data::DataSource;

#[derive(Subcommand)]
pub enum PlotCommand {
    /// Bone-age histogram by sex, in years (the original's "Analyze gender distribution").
    Histogram {
        #[command(flatten)]
        source: DataSource,
        /// Output file, .png or .svg.
        #[arg(long, value_name = "FILE", default_value = "histogram.png")]
        out: PathBuf,
    },
    /// A grid of radiographs spread over the age range, titled with id, sex and age.
    Radiographs {
        #[command(flatten)]
        source: DataSource,
        /// How many radiographs.
        #[arg(long, default_value_t = 12)]
        n: usize,
        /// Output file (.png: radiographs are raster images).
        #[arg(long, value_name = "FILE", default_value = "radiographs.png")]
        out: PathBuf,
    },
    /// The crop window and augmentation margin of the configured preprocessing over one radiograph.
    Crop {
        image: PathBuf,
        #[arg(long, value_name = "FILE", default_value = "crop.png")]
        out: PathBuf,
    },
    /// Augmented training views of one radiograph (configured preprocessing and augmentation).
    Augmentation {
        image: PathBuf,
        /// How many augmented views.
        #[arg(long, default_value_t = 7)]
        n: usize,
        #[arg(long, value_name = "FILE", default_value = "augmentation.png")]
        out: PathBuf,
    },
    /// Loss and validation score per epoch from a run directory's metrics.csv.
    Curves {
        /// The run directory.
        run: PathBuf,
        #[arg(long, value_name = "FILE", default_value = "curves.png")]
        out: PathBuf,
    },
    /// Predicted vs true scatter and residuals by age from an evaluation's predictions.csv.
    Evaluation {
        /// predictions.csv written by `bone-age evaluate` (age model).
        predictions: PathBuf,
        /// Directory for scatter.<format> and residuals.<format>.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out_dir: PathBuf,
        /// png or svg.
        #[arg(long, default_value = "png", value_parser = ["png", "svg"])]
        format: String,
    },
}

pub fn run(cmd: PlotCommand, config: &Config) -> Result<()> {
    match cmd {
        PlotCommand::Histogram { source, out } => {
            let (_, ds) = source.load(config)?;
            write(&plot::AgeHistogram::of(&ds.frame)?, &out)
        }
        PlotCommand::Radiographs { source, n, out } => {
            let (_, ds) = source.load(config)?;
            let tiles = plot::radiograph_tiles(&ds.frame, n)?;
            write(&plot::RadiographGrid::new(tiles, 4), &out)
        }
        PlotCommand::Crop { image, out } => {
            write(&plot::CropOverlay::of(&image, &config.preprocess)?, &out)
        }
        PlotCommand::Augmentation { image, n, out } => {
            let (pre, seed) = (&config.preprocess, config.runtime.seed);
            write(
                &plot::AugmentationGallery::of(&image, pre, &config.augment, n, seed)?,
                &out,
            )
        }
        PlotCommand::Curves { run, out } => write(&plot::TrainingCurves::read(&run)?, &out),
        PlotCommand::Evaluation {
            predictions,
            out_dir,
            format,
        } => {
            let predictions = bone_age::evaluate::read_predictions(&predictions)?;
            std::fs::create_dir_all(&out_dir)
                .with_context(|| format!("creating {}", out_dir.display()))?;
            write(
                &plot::PredictionScatter {
                    predictions: predictions.clone(),
                },
                &out_dir.join(format!("scatter.{format}")),
            )?;
            write(
                &plot::Residuals { predictions },
                &out_dir.join(format!("residuals.{format}")),
            )
        }
    }
}

fn write(fig: &impl Plot, out: &Path) -> Result<()> {
    plot::save(fig, out, None)?;
    println!("wrote {}", out.display());
    Ok(())
}
