//! One HTTP transfer to a file: resumes `.part` with Range when the validators still
//! match, retries connection errors and 5xx with backoff, honours `Retry-After` on 429,
//! and checks the length and an optional SHA-256.
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::{self, HeaderMap};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{err, Credentials, Options};
use crate::error::{Error, Result};

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
