//! `bone-age download`: a Kaggle dataset or a URL, resumably, then a summary of what arrived.
use std::path::PathBuf;

use anyhow::Result;
use bone_age::dataset::{Dataset, Split};
use bone_age::summary::Summary;
use bone_age::Config;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum DownloadCommand {
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

pub fn run(cmd: DownloadCommand, config: &Config) -> Result<()> {
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
