//! Downloads against local HTTP servers on 127.0.0.1 that each test starts itself: basic
//! auth, redirects to another host, resume after a dropped connection, retries, error
//! messages, and safe zip extraction. No test touches the internet.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bone_age::download::{self, Credentials, Options, MARKER};

#[derive(Clone, Debug)]
struct Request {
    path: String,
    headers: HashMap<String, String>,
}

type Log = Arc<Mutex<Vec<Request>>>;

/// A one-thread HTTP/1.1 server: `reply(request, n)` gives the raw bytes for the n-th
/// request (0-based), written as is before the connection is closed.
fn serve(reply: impl Fn(&Request, usize) -> Vec<u8> + Send + 'static) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut headers = HashMap::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
            let req = Request { path, headers };
            seen.lock().unwrap().push(req.clone());
            let _ = stream.write_all(&reply(&req, n));
            let _ = stream.flush();
        }
    });
    (base, log)
}

fn response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A zip of a tiny recipe-layout dataset (plus any extra entries).
fn dataset_zip(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("train.csv", opts).unwrap();
        w.write_all(b"id,boneage,male\n1,100,True\n").unwrap();
        w.start_file("train/1.png", opts).unwrap();
        w.write_all(&[7u8; 3000]).unwrap();
        for (name, data) in extra {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
    }
    buf.into_inner()
}

fn fast() -> Options {
    Options {
        backoff: Duration::from_millis(10),
        progress: false,
        ..Default::default()
    }
}

fn basic(user: &str, key: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = format!("{user}:{key}").into_bytes();
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            s.push(if i <= c.len() {
                T[(n >> (18 - 6 * i) & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    format!("Basic {s}")
}

#[test]
fn kaggle_basic_auth_then_extract_and_idempotent_rerun() {
    let zip = dataset_zip(&[]);
    let want = basic("alice", "s3cret");
    let (base, log) = serve(move |req, _| {
        assert_eq!(req.path, "/api/v1/datasets/download/kmader/rsna-bone-age");
        if req.headers.get("authorization") == Some(&want) {
            response("200 OK", &[], &zip)
        } else {
            response("401 Unauthorized", &[], b"")
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("rsna");
    let creds = Credentials::new("alice", "s3cret");
    download::kaggle(&base, "kmader/rsna-bone-age", None, &to, &creds, &fast()).unwrap();
    assert!(to.join("train/1.png").exists() && to.join(MARKER).exists());
    let (_, ds) = bone_age::Dataset::from_dir(&to, bone_age::Split::Train, None).unwrap();
    assert_eq!(ds.frame.height(), 1, "the loader reads the result directly");
    assert_eq!(log.lock().unwrap().len(), 1);
    download::kaggle(&base, "kmader/rsna-bone-age", None, &to, &creds, &fast()).unwrap();
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "a completed download is not fetched again"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        [std::ffi::OsString::from("rsna")],
        "no temporary files left"
    );

    let err = download::kaggle(
        &base,
        "kmader/rsna-bone-age",
        None,
        &dir.path().join("x"),
        &Credentials::new("alice", "wrong"),
        &fast(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("credentials were rejected"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("wrong"),
        "the key is never printed: {err}"
    );
    assert!(!format!("{creds:?}").contains("s3cret"));
}

#[test]
fn authorization_is_not_sent_to_the_redirect_target() {
    let zip = dataset_zip(&[]);
    let (storage, storage_log) = serve(move |_, _| response("200 OK", &[], &zip));
    let location = format!("{storage}/bucket/archive.zip");
    let (api, api_log) =
        serve(move |_, _| response("302 Found", &[("Location", location.clone())], b""));
    let dir = tempfile::tempdir().unwrap();
    download::kaggle(
        &api,
        "o/d",
        None,
        &dir.path().join("d"),
        &Credentials::new("u", "k"),
        &fast(),
    )
    .unwrap();
    assert!(api_log.lock().unwrap()[0]
        .headers
        .contains_key("authorization"));
    let storage_req = &storage_log.lock().unwrap()[0];
    assert_eq!(storage_req.path, "/bucket/archive.zip");
    assert!(
        !storage_req.headers.contains_key("authorization"),
        "{:?}",
        storage_req.headers
    );
}

#[test]
fn resumes_with_range_after_a_dropped_connection() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let expected = body.clone();
    let (base, log) = serve(move |req, n| {
        let len = body.len();
        if n == 0 {
            // Promise everything, send 40%, hang up.
            let mut r = response("200 OK", &[("ETag", "\"v1\"".into())], &body);
            r.truncate(r.len() - len * 6 / 10);
            r
        } else {
            let start: usize = req.headers["range"]
                .trim_start_matches("bytes=")
                .trim_end_matches('-')
                .parse()
                .unwrap();
            response(
                "206 Partial Content",
                &[
                    ("ETag", "\"v1\"".into()),
                    ("Content-Range", format!("bytes {start}-{}/{len}", len - 1)),
                ],
                &body[start..],
            )
        }
    });
    let dir = tempfile::tempdir().unwrap();
    download::url(&format!("{base}/data.bin"), &dir.path().join("d"), &fast()).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("d/data.bin")).unwrap(),
        expected,
        "a non-zip file passes through"
    );
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[1].headers["range"],
        format!("bytes={}-", 200_000 * 4 / 10)
    );
    assert_eq!(log[1].headers["if-range"], "\"v1\"");
}

#[test]
fn server_errors_and_429_are_retried() {
    let zip = dataset_zip(&[]);
    let (base, log) = serve(move |_, n| match n {
        0 => response("503 Service Unavailable", &[], b""),
        1 => response("429 Too Many Requests", &[("Retry-After", "0".into())], b""),
        _ => response("200 OK", &[], &zip),
    });
    let dir = tempfile::tempdir().unwrap();
    download::url(&format!("{base}/a.zip"), &dir.path().join("d"), &fast()).unwrap();
    assert_eq!(log.lock().unwrap().len(), 3);

    let (base, _) = serve(|_, _| response("500 Internal Server Error", &[], b""));
    let err = download::url(
        &format!("{base}/a.zip"),
        &dir.path().join("e"),
        &Options {
            retries: 2,
            ..fast()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("gave up after 2 attempts"),
        "{err}"
    );
}

#[test]
fn http_errors_say_what_to_do() {
    for (status, says) in [
        ("401 Unauthorized", "credentials were rejected"),
        ("403 Forbidden", "accept the dataset's rules"),
        ("404 Not Found", "not found"),
    ] {
        let (base, _) = serve(move |_, _| response(status, &[], b""));
        let dir = tempfile::tempdir().unwrap();
        let err = download::kaggle(
            &base,
            "o/d",
            Some("f.csv"),
            &dir.path().join("d"),
            &Credentials::new("u", "k"),
            &fast(),
        )
        .unwrap_err();
        assert!(err.to_string().contains(says), "{status}: {err}");
        assert!(!dir.path().join("d").exists());
    }
    let err = download::kaggle(
        "http://127.0.0.1:1",
        "not-a-dataset",
        None,
        Path::new("/tmp/x"),
        &Credentials::new("u", "k"),
        &fast(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("OWNER/SLUG"), "{err}");
}

#[test]
fn unsafe_or_corrupt_zips_are_refused_and_leave_nothing() {
    let evil = dataset_zip(&[("../escape.txt", b"x")]);
    let (base, _) = serve(move |_, _| response("200 OK", &[], &evil));
    let dir = tempfile::tempdir().unwrap();
    let err = download::url(&format!("{base}/e.zip"), &dir.path().join("d"), &fast()).unwrap_err();
    assert!(err.to_string().contains("../escape.txt"), "{err}");
    assert!(!dir.path().join("d").exists() && !dir.path().join("escape.txt").exists());

    let mut corrupt = dataset_zip(&[]);
    let at = corrupt
        .windows(4)
        .position(|w| w == [7, 7, 7, 7])
        .unwrap_or(60);
    corrupt[at + 100] ^= 0xff; // flip a stored byte: the CRC no longer matches
    let (base, _) = serve(move |_, _| response("200 OK", &[], &corrupt));
    let err = download::url(&format!("{base}/c.zip"), &dir.path().join("c"), &fast()).unwrap_err();
    assert!(
        err.to_string().contains("c.zip") || err.to_string().contains("entry"),
        "{err}"
    );
    assert!(
        !dir.path().join("c").exists(),
        "no half dataset that looks complete"
    );
}

#[test]
fn sha256_is_verified() {
    let (base, _) = serve(|_, _| response("200 OK", &[], b"hello"));
    let dir = tempfile::tempdir().unwrap();
    let good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    download::url(
        &format!("{base}/h.txt"),
        &dir.path().join("ok"),
        &Options {
            sha256: Some(good.into()),
            ..fast()
        },
    )
    .unwrap();
    let err = download::url(
        &format!("{base}/h.txt"),
        &dir.path().join("bad"),
        &Options {
            sha256: Some("00".repeat(32)),
            ..fast()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("SHA-256 mismatch"), "{err}");
}

#[test]
fn credentials_are_found_like_the_kaggle_cli() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kaggle.json"),
        r#"{"username": "bob", "key": "k3y"}"#,
    )
    .unwrap();
    // This is the only test that touches these variables.
    std::env::remove_var("KAGGLE_USERNAME");
    std::env::remove_var("KAGGLE_KEY");
    std::env::set_var("KAGGLE_CONFIG_DIR", dir.path());
    assert_eq!(Credentials::find().unwrap().username, "bob");
    std::env::set_var("KAGGLE_USERNAME", "carol");
    std::env::set_var("KAGGLE_KEY", "other");
    assert_eq!(
        Credentials::find().unwrap().username,
        "carol",
        "the environment wins"
    );
    std::env::remove_var("KAGGLE_USERNAME");
    std::env::remove_var("KAGGLE_KEY");
    std::env::set_var("KAGGLE_CONFIG_DIR", dir.path().join("empty"));
    let home = std::env::var_os("HOME");
    std::env::set_var("HOME", dir.path().join("nohome"));
    let err = Credentials::find().unwrap_err().to_string();
    if let Some(h) = home {
        std::env::set_var("HOME", h);
    }
    assert!(
        err.contains("KAGGLE_USERNAME") && err.contains("kaggle.json"),
        "{err}"
    );
}

#[test]
fn download_command_prints_the_dataset_summary() {
    let zip = dataset_zip(&[]);
    let (base, _) = serve(move |_, _| response("200 OK", &[], &zip));
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("data");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bone-age"))
        .args([
            "download",
            "url",
            &format!("{base}/rsna.zip"),
            "--to",
            to.to_str().unwrap(),
        ])
        .env("BONE_AGE_PROGRESS", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("layout          recipe") && stdout.contains("1 in CSV, 1 with an image"),
        "{stdout}"
    );
}

#[test]
fn a_source_parses_and_prepares_phantom_data_once() {
    use bone_age::download::Source;
    assert_eq!("phantom".parse::<Source>().unwrap(), Source::Phantom);
    assert_eq!(
        "kaggle:kmader/rsna-bone-age".parse::<Source>().unwrap(),
        Source::Kaggle("kmader/rsna-bone-age".into())
    );
    assert_eq!(
        "/data/rsna".parse::<Source>().unwrap(),
        Source::Dir("/data/rsna".into())
    );
    assert!("  ".parse::<Source>().is_err());

    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("nowhere");
    let err = Source::Dir(missing.clone())
        .prepare(root.path(), 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(missing.to_str().unwrap()) && err.contains("no such directory"),
        "{err}"
    );

    let dir = Source::Phantom.prepare(root.path(), 1).unwrap();
    assert_eq!(dir, root.path().join("phantom"));
    let (_, train) = bone_age::Dataset::from_dir(&dir, bone_age::Split::Train, None).unwrap();
    assert_eq!(
        train.frame.height(),
        bone_age::PhantomSpec::default().n_train
    );
    // A second call finds the complete set and writes nothing.
    let csv = dir.join("train.csv");
    let before = std::fs::metadata(&csv).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(Source::Phantom.prepare(root.path(), 1).unwrap(), dir);
    assert_eq!(std::fs::metadata(&csv).unwrap().modified().unwrap(), before);
}
