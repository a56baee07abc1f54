//! Dataset download: the Kaggle API (`GET {base}/api/v1/datasets/download/{owner}/{slug}[/{file}]`
//! with HTTP basic auth) and plain URLs. Transfers resume from a `.part` file with HTTP
//! Range (validated by ETag/Last-Modified and length), retry connection errors and 5xx
//! with backoff, honour `Retry-After` on 429, and verify length and an optional SHA-256.
//! Zips are extracted with every CRC checked, refusing entries that escape the target,
//! into a temporary directory renamed into place, with a completion marker.
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

mod extract;
mod transfer;

pub use extract::extract;
use extract::is_zip;
pub use transfer::transfer;

/// Where a dataset comes from: the notebook's one switch between the built-in phantom
/// data and real radiographs. Parses from `phantom`, `kaggle:OWNER/SLUG` or a path.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// The built-in synthetic hands (generated offline, once).
    Phantom,
    /// A Kaggle dataset, e.g. `kmader/rsna-bone-age` (credentials as the kaggle CLI finds them).
    Kaggle(String),
    /// A directory in the recipe or Kaggle layout.
    Dir(PathBuf),
}

impl std::str::FromStr for Source {
    type Err = Error;
    fn from_str(s: &str) -> Result<Source> {
        Ok(match s.trim() {
            "" => {
                return Err(err(
                    "empty data source: expected phantom, kaggle:OWNER/SLUG or a directory",
                ))
            }
            "phantom" => Source::Phantom,
            k if k.starts_with("kaggle:") => Source::Kaggle(k["kaggle:".len()..].to_string()),
            path => Source::Dir(PathBuf::from(path)),
        })
    }
}

impl Source {
    /// Makes the dataset available under `data_root` and returns its directory: writes
    /// the phantom set (seeded) unless complete, downloads and extracts a Kaggle dataset
    /// unless already done, or checks that a directory exists.
    pub fn prepare(&self, data_root: &Path, seed: u64) -> Result<PathBuf> {
        match self {
            Source::Phantom => {
                let dir = data_root.join("phantom");
                if !(dir.join("train.csv").is_file() && dir.join("test.csv").is_file()) {
                    let spec = crate::PhantomSpec {
                        seed,
                        ..Default::default()
                    };
                    crate::phantom::write_dataset(&dir, &spec)?;
                }
                Ok(dir)
            }
            Source::Kaggle(dataset) => {
                let slug = dataset.rsplit('/').next().unwrap_or(dataset);
                let to = data_root.join(slug);
                let creds = Credentials::find()?;
                kaggle(
                    "https://www.kaggle.com",
                    dataset,
                    None,
                    &to,
                    &creds,
                    &Options::default(),
                )
            }
            Source::Dir(dir) if dir.is_dir() => Ok(dir.clone()),
            Source::Dir(dir) => Err(Error::Dataset {
                path: dir.clone(),
                message: "no such directory (expected a dataset in the recipe or Kaggle layout)"
                    .into(),
            }),
        }
    }
}

/// The marker a finished download leaves in its target directory.
pub const MARKER: &str = ".bone-age-download.json";

/// Kaggle credentials; `Debug` never shows the key.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, key: <hidden> }}",
            self.username
        )
    }
}

fn err(message: impl Into<String>) -> Error {
    Error::Download {
        message: message.into(),
    }
}

impl Credentials {
    pub fn new(username: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            key: key.into(),
        }
    }

    /// As the kaggle CLI: `KAGGLE_USERNAME`/`KAGGLE_KEY`, else `$KAGGLE_CONFIG_DIR/kaggle.json`,
    /// else `~/.kaggle/kaggle.json`. Warns when the file is readable by others.
    pub fn find() -> Result<Credentials> {
        if let (Ok(u), Ok(k)) = (
            std::env::var("KAGGLE_USERNAME"),
            std::env::var("KAGGLE_KEY"),
        ) {
            return Ok(Credentials::new(u, k));
        }
        let dir = std::env::var_os("KAGGLE_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kaggle")));
        let file = dir.map(|d| d.join("kaggle.json"));
        let Some(file) = file.filter(|f| f.is_file()) else {
            return Err(err("no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY, or save the API token \
                 from kaggle.com → Settings → API → Create New Token as ~/.kaggle/kaggle.json (chmod 600), \
                 or point KAGGLE_CONFIG_DIR at its folder"));
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&file)
                .map_err(|e| Error::io(&file, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "{} is readable by other users (mode {:o}); run chmod 600 on it",
                    file.display(),
                    mode & 0o777
                );
            }
        }
        #[derive(Deserialize)]
        struct Token {
            username: String,
            key: String,
        }
        let text = fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        let t: Token = serde_json::from_str(&text)
            .map_err(|e| err(format!("{}: not a Kaggle token ({e})", file.display())))?;
        Ok(Credentials::new(t.username, t.key))
    }
}

/// Download settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Expected SHA-256 (hex) of the downloaded file.
    pub sha256: Option<String>,
    /// Attempts per transfer (connection errors, 5xx, 429).
    pub retries: u32,
    /// First backoff; doubled each retry.
    pub backoff: Duration,
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sha256: None,
            retries: 5,
            backoff: Duration::from_secs(1),
            progress: true,
        }
    }
}

/// Downloads `{api_base}/api/v1/datasets/download/{dataset}[/{file}]` into `to` and
/// extracts it (a no-op when `to` holds a completed download).
pub fn kaggle(
    api_base: &str,
    dataset: &str,
    file: Option<&str>,
    to: &Path,
    creds: &Credentials,
    opts: &Options,
) -> Result<PathBuf> {
    if dataset.split('/').count() != 2 || dataset.starts_with('/') || dataset.ends_with('/') {
        return Err(err(format!(
            "dataset {dataset:?}: expected OWNER/SLUG, e.g. kmader/rsna-bone-age"
        )));
    }
    let mut url = format!(
        "{}/api/v1/datasets/download/{dataset}",
        api_base.trim_end_matches('/')
    );
    if let Some(f) = file {
        url = format!("{url}/{f}");
    }
    // A whole dataset comes as a zip; a single --file may be anything.
    fetch_and_extract(&url, Some(creds), to, opts, file.is_none())
}

/// Downloads any URL into `to` and extracts it when it is a zip.
pub fn url(url: &str, to: &Path, opts: &Options) -> Result<PathBuf> {
    fetch_and_extract(url, None, to, opts, false)
}

fn fetch_and_extract(
    url: &str,
    creds: Option<&Credentials>,
    to: &Path,
    opts: &Options,
    require_zip: bool,
) -> Result<PathBuf> {
    if let Ok(text) = fs::read_to_string(to.join(MARKER)) {
        if serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["url"].as_str().map(|u| u == url))
            == Some(true)
        {
            tracing::info!("{} already holds {url}; nothing to do", to.display());
            return Ok(to.to_path_buf());
        }
    }
    let parent = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = to
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("download");
    let archive = parent.join(format!(".{name}.download"));
    transfer(url, creds, &archive, opts)?;
    if require_zip && !is_zip(&archive) {
        let _ = fs::remove_file(&archive);
        return Err(err(format!(
            "{url}: the response is not a zip archive (a dataset download should be one)"
        )));
    }
    if let Err(e) = extract(&archive, to, url) {
        let _ = fs::remove_file(&archive);
        return Err(err(format!("{url}: {e}")));
    }
    let _ = fs::remove_file(&archive);
    Ok(to.to_path_buf())
}
