//! Dataset download: the Kaggle API (`GET {base}/api/v1/datasets/download/{owner}/{slug}[/{file}]`
//! with HTTP basic auth) and plain URLs. Transfers resume from a `.part` file with HTTP
//! Range (validated by ETag/Last-Modified and length), retry connection errors and 5xx
//! with backoff, honour `Retry-After` on 429, and verify length and an optional SHA-256.
//! Zips are extracted with every CRC checked, refusing entries that escape the target,
//! into a temporary directory renamed into place, with a completion marker.
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::{self, HeaderMap};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

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

/// What validates a `.part` file for resuming.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct PartInfo {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    total: Option<u64>,
}

fn client() -> Result<Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .user_agent(concat!("bone-age/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| err(format!("HTTP client: {e}")))
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

/// Downloads `url` to `dest`, resuming `dest.part` when its validators still match.
pub fn transfer(url: &str, creds: Option<&Credentials>, dest: &Path, opts: &Options) -> Result<()> {
    let client = client()?;
    let part = dest.with_extension("part");
    let info_path = dest.with_extension("part.json");
    let mut info: PartInfo = fs::read_to_string(&info_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if info.url != url {
        let _ = fs::remove_file(&part);
        info = PartInfo {
            url: url.to_string(),
            ..Default::default()
        };
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let have = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let mut req = client.get(url);
        if let Some(c) = creds {
            req = req.basic_auth(&c.username, Some(&c.key));
        }
        if have > 0 {
            req = req.header(header::RANGE, format!("bytes={have}-"));
            if let Some(v) = info.etag.as_ref().or(info.last_modified.as_ref()) {
                req = req.header(header::IF_RANGE, v);
            }
        }
        let retry = |why: String, wait: Duration| -> Result<()> {
            if attempt >= opts.retries {
                return Err(err(format!("{url}: {why}; gave up after {attempt} attempts (the partial file is kept for a later resume)")));
            }
            tracing::warn!("{why}; retrying in {:.1} s", wait.as_secs_f64());
            std::thread::sleep(wait);
            Ok(())
        };
        let backoff = opts.backoff * 2u32.saturating_pow(attempt - 1);
        let resp = match req.send() {
            Ok(r) => r,
            Err(e) => {
                retry(format!("connection failed ({e})"), backoff)?;
                continue;
            }
        };
        let status = resp.status();
        match status {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => {}
            StatusCode::UNAUTHORIZED => return Err(err(format!("{url}: 401: the credentials were rejected (check the username and key in kaggle.json)"))),
            StatusCode::FORBIDDEN => return Err(err(format!("{url}: 403: forbidden; accept the dataset's rules on the Kaggle website (the dataset page's Data tab) with this account, then retry"))),
            StatusCode::NOT_FOUND => return Err(err(format!("{url}: 404: the dataset or file was not found (check OWNER/SLUG and --file)"))),
            StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
                let _ = fs::remove_file(&part);
                continue;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let wait = retry_after(resp.headers()).unwrap_or(backoff);
                retry("429: too many requests".into(), wait)?;
                continue;
            }
            s if s.is_server_error() => {
                retry(format!("server error {s}"), backoff)?;
                continue;
            }
            s => return Err(err(format!("{url}: unexpected HTTP status {s}"))),
        }
        let resuming = status == StatusCode::PARTIAL_CONTENT && have > 0;
        let validators = PartInfo {
            url: url.to_string(),
            etag: header_str(resp.headers(), header::ETAG),
            last_modified: header_str(resp.headers(), header::LAST_MODIFIED),
            total: if resuming {
                total_from_range(resp.headers())
            } else {
                resp.content_length()
            },
        };
        if resuming
            && (validators.etag != info.etag || validators.total != info.total)
            && info.etag.is_some()
        {
            let _ = fs::remove_file(&part);
            continue;
        }
        if !resuming {
            info = validators;
            fs::write(&info_path, serde_json::to_vec(&info).expect("serialises"))
                .map_err(|e| Error::io(&info_path, e))?;
        }
        match write_body(resp, &part, resuming, info.total, opts) {
            Ok(()) => break,
            Err(e @ Error::Io { .. }) => return Err(e),
            Err(e) => retry(format!("transfer interrupted ({e})"), backoff)?,
        }
    }
    let len = fs::metadata(&part).map_err(|e| Error::io(&part, e))?.len();
    if let Some(total) = info.total.filter(|&t| t != len) {
        return Err(err(format!(
            "{}: got {len} bytes, expected {total}",
            part.display()
        )));
    }
    if let Some(want) = &opts.sha256 {
        let got = sha256_file(&part)?;
        if !got.eq_ignore_ascii_case(want) {
            let _ = fs::remove_file(&part);
            return Err(err(format!(
                "{url}: SHA-256 mismatch: got {got}, expected {want}; the download was deleted"
            )));
        }
    }
    fs::rename(&part, dest).map_err(|e| Error::io(dest, e))?;
    let _ = fs::remove_file(&info_path);
    Ok(())
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn retry_after(h: &HeaderMap) -> Option<Duration> {
    header_str(h, header::RETRY_AFTER)?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The total size from `Content-Range: bytes a-b/total`.
fn total_from_range(h: &HeaderMap) -> Option<u64> {
    header_str(h, header::CONTENT_RANGE)?
        .rsplit('/')
        .next()?
        .parse()
        .ok()
}

fn write_body(
    mut resp: Response,
    part: &Path,
    append: bool,
    total: Option<u64>,
    opts: &Options,
) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(part)
        .map_err(|e| Error::io(part, e))?;
    let have = if append {
        file.metadata().map(|m| m.len()).unwrap_or(0)
    } else {
        0
    };
    let bar = crate::progress::bytes(total.unwrap_or(0), "download");
    if !opts.progress {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_position(have);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = resp.read(&mut buf).map_err(|e| err(e.to_string()))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(|e| {
            if e.raw_os_error() == Some(28) {
                err(format!("{}: the disk is full (the partial file is kept; free space and rerun to resume)", part.display()))
            } else {
                Error::io(part, e)
            }
        })?;
        bar.inc(n as u64);
    }
    file.sync_all().map_err(|e| Error::io(part, e))?;
    bar.finish_and_clear();
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    match total {
        Some(t) if len < t => Err(err(format!("connection closed at {len} of {t} bytes"))),
        _ => Ok(()),
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Extracts `archive` (a zip) into `to`, or moves a single non-zip file there; through a
/// temporary sibling directory renamed into place, ending with the completion marker.
pub fn extract(archive: &Path, to: &Path, source: &str) -> Result<()> {
    let parent = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = parent.join(format!(
        ".{}.extracting",
        to.file_name().and_then(|n| n.to_str()).unwrap_or("data")
    ));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let is_zip = is_zip(archive);
    let result = if is_zip {
        unzip(archive, &tmp)
    } else {
        let name = Path::new(source.rsplit('/').next().unwrap_or("download"))
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| "download".into());
        fs::copy(archive, tmp.join(name))
            .map(drop)
            .map_err(|e| Error::io(archive, e))
    };
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let marker = serde_json::json!({ "url": source, "zip": is_zip });
    fs::write(tmp.join(MARKER), marker.to_string()).map_err(|e| Error::io(&tmp, e))?;
    if to.exists() {
        fs::remove_dir_all(to).map_err(|e| Error::io(to, e))?;
    }
    fs::rename(&tmp, to).map_err(|e| Error::io(to, e))
}

/// Whether `path` starts with the zip local-file signature.
fn is_zip(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"PK\x03\x04"
}

fn unzip(archive: &Path, into: &Path) -> Result<()> {
    let bad = |m: String| err(format!("{}: {m}", archive.display()));
    let file = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a valid zip ({e})")))?;
    // Check every entry's path and the total size before writing anything.
    let mut total = 0u64;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| bad(format!("entry {i}: {e}")))?;
        let name = entry
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| format!("entry {i}"));
        let safe = Path::new(&name)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !safe || entry.enclosed_name().is_none() {
            return Err(bad(format!(
                "refusing entry {name:?}: its path leaves the target directory"
            )));
        }
        if entry.is_symlink() {
            return Err(bad(format!(
                "refusing entry {name:?}: symbolic links are not extracted"
            )));
        }
        total += entry.size();
    }
    let free = fs4::available_space(into).map_err(|e| Error::io(into, e))?;
    if total > free {
        return Err(err(format!(
            "the disk is full: extracting needs {total} bytes, {} has {free} free",
            into.display()
        )));
    }
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| bad(format!("entry {i}: {e}")))?;
        let rel = entry.enclosed_name().expect("checked above");
        let out = into.join(rel);
        if entry.is_dir() {
            fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
            continue;
        }
        if let Some(p) = out.parent() {
            fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
        }
        let mut f = File::create(&out).map_err(|e| Error::io(&out, e))?;
        // Reading to the end makes the zip crate check the entry's CRC-32.
        std::io::copy(&mut entry, &mut f)
            .map_err(|e| bad(format!("entry {:?}: {e}", entry.name())))?;
    }
    Ok(())
}
