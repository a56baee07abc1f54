//! `bone-age data`: summarise a dataset, generate the phantom set, prebuild the image
//! cache; and `DataSource`, the dataset flags other subcommands share.
use std::path::PathBuf;

use anyhow::Result;
use bone_age::dataset::{Dataset, Layout, Split};
use bone_age::summary::Summary;
use bone_age::{Config, ImageCache, PhantomSpec};
use clap::{Args, Subcommand, ValueEnum};

use super::parse_hw;

#[derive(Subcommand)]
pub enum DataCommand {
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
    /// Quality control: run the inversion check and the hand finder ([preprocess.hand])
    /// on every image and count what they find (JSON), without changing anything.
    Qc {
        #[command(flatten)]
        source: DataSource,
        /// Invert every image first: measures how often the inversion check catches an
        /// inverted radiograph.
        #[arg(long)]
        invert_first: bool,
        /// Print the whole survey as JSON (else counts and the first problems).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct DataSource {
    /// Dataset root [config: paths.data_dir].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Which split of --data-dir [default: train; for evaluate, the labelled test split,
    /// else the checkpoint's held-out fold].
    #[arg(long, value_enum)]
    split: Option<SplitArg>,
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

impl DataSource {
    /// Whether the user named the data (--split or --labels) rather than leaving it to a default.
    pub fn chosen(&self) -> bool {
        self.split.is_some() || self.labels.is_some()
    }

    /// Whether this is the train split of --data-dir.
    pub fn is_train_split(&self) -> bool {
        self.labels.is_none() && matches!(self.split, None | Some(SplitArg::Train))
    }

    pub fn load(&self, config: &Config) -> Result<(Option<Layout>, Dataset)> {
        if let (Some(csv), Some(images)) = (&self.labels, &self.images) {
            return Ok((None, Dataset::from_csv(csv, images)?));
        }
        let root = self
            .data_dir
            .clone()
            .unwrap_or_else(|| config.paths.data_dir.clone());
        let split = match self.split {
            None | Some(SplitArg::Train) => Split::Train,
            Some(SplitArg::Test) => Split::Test,
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

pub fn run(cmd: DataCommand, config: &Config) -> Result<()> {
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
        DataCommand::Qc {
            source,
            invert_first,
            json,
        } => {
            let (_, ds) = source.load(config)?;
            let paths = bone_age::dataset::paths(&ds.frame)?;
            let s = bone_age::preprocess::survey::survey(&paths, &config.preprocess, invert_first);
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "{} images{}: {} look inverted, hand found in {} (mean box {:.0}% of the frame), \
                     not found in {}, {} unreadable",
                    s.images,
                    if invert_first { " (inverted first)" } else { "" },
                    s.looks_inverted,
                    s.hand_found,
                    100.0 * s.mean_box_area,
                    s.hand_not_found.len(),
                    s.unreadable.len()
                );
                for line in s.hand_not_found.iter().chain(&s.unreadable).take(10) {
                    println!("  {line}");
                }
            }
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
