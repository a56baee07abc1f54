//! DICOM input against files nobody here wrote: every test file pydicom's wheel ships
//! (MR/CT in many encodings, JPEG, JPEG-LS, JPEG 2000, RLE, colour, truncated and
//! malformed files, non-image objects) either decodes to the grey levels pydicom gives
//! after the same rescale, window and inversion (scripts/dicom_reference.py), or is
//! refused with an error naming the file; never a panic. Needs the project venv
//! (`make setup`, which installs pydicom and its decoder plugins).
#![cfg(feature = "dicom")]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::venv_python;

/// Runs `scripts/NAME` with the venv's Python (pydicom and its plugins), checked.
fn python_script(name: &str, args: &[&std::ffi::OsStr]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name);
    let res = Command::new(venv_python())
        .arg(&script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "{name}: {}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
}

/// Runs scripts/dicom_reference.py on `files` (all of pydicom's test files when empty)
/// into `out`, returning its manifest.
fn reference(out: &Path, files: &[PathBuf]) -> Vec<serde_json::Value> {
    let mut args = vec![out.as_os_str()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    python_script("dicom_reference.py", &args);
    let text = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    m["files"].as_array().unwrap().clone()
}

/// Largest and mean absolute difference of two grey images.
fn difference(a: &[u8], b: &[u8]) -> (u8, f64) {
    let d: Vec<u8> = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).collect();
    let max = d.iter().copied().max().unwrap_or(0);
    (
        max,
        d.iter().map(|&v| v as f64).sum::<f64>() / d.len().max(1) as f64,
    )
}

/// Files of these kinds must decode (their transfer syntax and colour model are ones
/// bone-age claims), so a reader that refused everything could not pass.
const MUST_DECODE: &[&str] = &[
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_implicit.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_padded.dcm",
    "JPEG2000.dcm",
    "image_dfl.dcm",
    "examples_overlay.dcm",
    "SC_rgb_jpeg_gdcm.dcm",
    "SC_rgb_rle.dcm",
    "rtdose_1frame.dcm",
    "rtdose.dcm",
];

#[test]
fn every_pydicom_test_file_decodes_as_pydicom_does_or_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = reference(dir.path(), &[]);
    assert!(
        manifest.len() >= 70,
        "pydicom ships ~80 test files, found {}",
        manifest.len()
    );
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut decoded = Vec::new();
    for e in &manifest {
        let path = PathBuf::from(e["path"].as_str().unwrap());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let status = e["status"].as_str().unwrap();
        let ours = std::panic::catch_unwind(|| bone_age::preprocess::decode(&path, 64 << 20));
        let (verdict, detail) = match (ours, status) {
            (Err(_), _) => {
                failures.push(format!("{name}: panicked"));
                ("PANIC", String::new())
            }
            (Ok(Ok(d)), "decoded") => {
                let want = std::fs::read(dir.path().join(e["pixels"].as_str().unwrap())).unwrap();
                let size = (
                    e["columns"].as_u64().unwrap() as u32,
                    e["rows"].as_u64().unwrap() as u32,
                );
                let lossy = e["lossy"].as_bool().unwrap_or(false);
                let (max, mean) = difference(d.image.as_raw(), &want);
                let agree = d.image.dimensions() == size
                    && if lossy {
                        max <= 3 && mean <= 0.5
                    } else {
                        max == 0
                    };
                if !agree {
                    failures.push(format!(
                        "{name}: {:?} vs pydicom {size:?}, max difference {max}, mean {mean:.3}",
                        d.image.dimensions()
                    ));
                }
                decoded.push(name.clone());
                let frames = d.dicom.as_ref().map_or(1, |i| i.frames);
                let warned = d.dicom.as_ref().is_some_and(|i| {
                    i.warnings
                        .iter()
                        .any(|w| w.contains("frames: reading the first"))
                });
                if frames > 1 && !warned {
                    failures.push(format!("{name}: {frames} frames without a warning"));
                }
                let info = d.dicom.as_ref().map_or(String::new(), |i| {
                    format!("{} {}", i.photometric, i.window_source.name())
                });
                (
                    if !agree {
                        "MISMATCH"
                    } else if lossy {
                        "decoded (lossy)"
                    } else {
                        "decoded"
                    },
                    format!("{info}, max Δ {max}, mean {mean:.3}"),
                )
            }
            (Ok(Ok(_)), _) => {
                // pydicom could not decode it (no plugin manages it): nothing to compare.
                decoded.push(name.clone());
                (
                    "decoded, unchecked",
                    format!("pydicom: {}", e["error"].as_str().unwrap_or(status)),
                )
            }
            (Ok(Err(err)), _) => {
                let msg = err.to_string();
                if !msg.contains(&name) {
                    failures.push(format!("{name}: the error does not name the file: {msg}"));
                }
                // A non-image object says so; a malformed one (truncated, or beyond
                // dicom-rs's parser) may instead be an unreadable file.
                if status == "no-pixel-data"
                    && !(msg.contains("no pixel data") || msg.contains("not a readable DICOM file"))
                {
                    failures.push(format!("{name}: a non-image object, but: {msg}"));
                }
                let why = msg.split_once(": ").map_or(msg.as_str(), |(_, m)| m);
                ("refused", why.chars().take(90).collect())
            }
        };
        rows.push(format!(
            "| {name} | {} | {verdict} | {detail} |",
            e["transfer_syntax"].as_str().unwrap_or("-")
        ));
    }
    println!("| file | transfer syntax | bone-age | detail |\n|---|---|---|---|");
    for r in &rows {
        println!("{r}");
    }
    let count = |v: &str| {
        rows.iter()
            .filter(|r| r.contains(&format!("| {v}")))
            .count()
    };
    println!(
        "{} files: {} decoded and equal, {} lossy within ±3, {} decoded unchecked, {} refused, {} mismatched or panicked",
        rows.len(),
        count("decoded |"),
        count("decoded (lossy)"),
        count("decoded, unchecked"),
        count("refused"),
        failures.len()
    );
    let missing: Vec<_> = MUST_DECODE
        .iter()
        .filter(|f| !decoded.iter().any(|d| d == *f))
        .collect();
    assert!(
        missing.is_empty(),
        "supported files refused: {missing:?}\n{}",
        rows.join("\n")
    );
    assert!(
        failures.is_empty(),
        "{}\n{}",
        failures.join("\n"),
        rows.join("\n")
    );
}

/// Runs scripts/write_dx.py on `png` into `out` (with `--bad` for the refused files).
fn write_dx(png: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![png.as_os_str(), out.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    python_script("write_dx.py", &args);
}

#[test]
fn bad_dicom_files_are_clear_errors_and_a_folder_of_them_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (data, mut config) = common::phantom(dir.path(), 12);
    // Whole 128×128 images: no crop to the hand, so every image keeps the one size.
    config.preprocess.hand.crop = bone_age::preprocess::HandCrop::Off;
    let png = data.join("train/1.png");
    let dx = dir.path().join("dx");
    write_dx(&png, &dx, &["--bad"]);
    for (file, says) in [
        ("truncated.dcm", "not a readable DICOM file"),
        ("no-pixels.dcm", "no pixel data"),
        ("jpeg-ls.dcm", "1.2.840.10008.1.2.4.80) is not supported"),
        ("empty.dcm", "0×0 image"),
        ("bomb.dcm", "decompression bomb"),
    ] {
        let path = dx.join(file);
        let err = std::panic::catch_unwind(|| bone_age::preprocess::decode(&path, 64 << 20))
            .unwrap_or_else(|_| panic!("{file}: panicked"))
            .map(|_| ())
            .expect_err(file)
            .to_string();
        assert!(err.contains(file) && err.contains(says), "{file}: {err}");
        // The header pass (dataset summaries, the cache's size check) says the same or
        // less, never panics.
        let _ = bone_age::preprocess::checked_dimensions(&path, 64 << 20);
    }
    // A chest, or a right hand: read, with a warning each.
    let other = dir.path().join("other");
    write_dx(&png, &other, &["--body-part", "CHEST", "--laterality", "R"]);
    let info = bone_age::preprocess::decode(&other.join("mono2-16bit.dcm"), 64 << 20)
        .unwrap()
        .dicom
        .unwrap();
    let warnings = info.warnings.join("\n");
    assert!(warnings.contains("BodyPartExamined is CHEST"), "{warnings}");
    assert!(warnings.contains("laterality R"), "{warnings}");
    // A dataset folder holding PNGs, good DICOM files and a truncated one: the cache
    // leaves the bad one out, by id, and the loader uses the rest.
    let images = data.join("train");
    std::fs::remove_file(images.join("2.png")).unwrap();
    std::fs::copy(dx.join("mono1-12bit-window.dcm"), images.join("2.dcm")).unwrap();
    std::fs::remove_file(images.join("3.png")).unwrap();
    std::fs::copy(dx.join("truncated.dcm"), images.join("3.dcm")).unwrap();
    std::fs::remove_file(images.join("4.png")).unwrap();
    std::fs::copy(dx.join("jpeg-lossless.dcm"), images.join("4")).unwrap();
    let (_, ds) = bone_age::Dataset::from_dir(&data, bone_age::Split::Train, None).unwrap();
    assert_eq!(
        ds.frame.height(),
        12,
        "every id has an image (.png, .dcm, or DICOM by content)"
    );
    let summary = bone_age::summary::Summary::of(&ds, None).unwrap();
    let d = summary.dicom.expect("DICOM counts");
    // The truncated copy's header is whole: only decoding finds the cut.
    assert_eq!((d.files, d.unreadable.len()), (3, 0), "{d:?}");
    assert_eq!(d.photometric.get("MONOCHROME1"), Some(&2), "{d:?}");
    assert_eq!(d.photometric.get("MONOCHROME2"), Some(&1), "{d:?}");
    assert_eq!(d.window_source.get("window"), Some(&3), "{d:?}");
    let cache =
        bone_age::ImageCache::open(&ds.frame, &config.preprocess, &dir.path().join("cache"))
            .unwrap();
    assert_eq!(cache.skipped, [3], "the truncated file alone is left out");
    let loader = bone_age::BatchLoader::new(
        &cache,
        &ds.frame,
        bone_age::Target::Age,
        bone_age::LoaderConfig {
            batch_size: 4,
            drop_last: false,
            ..Default::default()
        },
        None,
        tch::Device::Cpu,
        1,
    )
    .unwrap();
    assert_eq!(loader.len(), 11);
}

#[test]
#[cfg_attr(not(shared_data), ignore = "../shared/data is absent")]
fn real_radiographs_as_dx_read_like_their_png_with_their_tags() {
    let dir = tempfile::tempdir().unwrap();
    let pngs: Vec<PathBuf> = ["1377", "1380", "1381"]
        .iter()
        .map(|id| common::shared_data(&format!("rsna-raw-sample/train/{id}.png")))
        .collect();
    for (k, png) in pngs.iter().enumerate() {
        let out = dir.path().join(format!("dx{k}"));
        write_dx(
            png,
            &out,
            &["--sex", "F", "--birth", "20100315", "--study", "20220601"],
        );
        let want = bone_age::preprocess::decode_gray(png, 64 << 20).unwrap();
        // MONOCHROME1 with a window and JPEG lossless give back the PNG's grey levels.
        for file in ["mono1-12bit-window.dcm", "jpeg-lossless.dcm"] {
            let d = bone_age::preprocess::decode(&out.join(file), 64 << 20).unwrap();
            assert_eq!(d.image.dimensions(), want.dimensions());
            let (max, _) = difference(d.image.as_raw(), want.as_raw());
            assert_eq!(max, 0, "{}: {file} differs from the PNG", png.display());
            let info = d.dicom.unwrap();
            assert_eq!(
                info.window_source,
                bone_age::preprocess::dicom::WindowSource::Window
            );
            assert_eq!(info.meta.sex.as_deref(), Some("F"));
        }
        // 16 bits without a window: the percentile window, so a monotone map of the PNG.
        let d = bone_age::preprocess::decode(&out.join("mono2-16bit.dcm"), 64 << 20).unwrap();
        let info = d.dicom.unwrap();
        assert_eq!(
            info.window_source,
            bone_age::preprocess::dicom::WindowSource::Percentile
        );
        let p = bone_age::readout::Patient::resolve(None, None, Some(&info.meta));
        assert_eq!(p.sex, Some(bone_age::readout::Sex::Female));
        assert!((p.age.unwrap().months - 146.56).abs() < 0.05, "{:?}", p.age);
        assert_eq!(p.from_file, ["sex", "age"]);
    }
}

#[test]
fn predict_reads_dicom_like_png_takes_sex_and_age_from_tags_and_never_prints_identifiers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::phantom_cli(&data, 64, 4);
    let run = dir.path().join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    let mut args = common::one_epoch(d, r);
    args.extend(common::WHOLE_IMAGE);
    args.extend([
        "--set",
        r#"preprocess.normalize={method="percentile",low=1.0,high=99.0}"#,
    ]);
    let out = common::bone_age(&args);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let png = data.join("test/65.png");
    let dx = dir.path().join("dx");
    write_dx(
        &png,
        &dx,
        &["--sex", "F", "--birth", "20150101", "--study", "20230701"],
    );
    let report = dir.path().join("report.html");
    let files = [
        "mono1-12bit-window.dcm",
        "mono2-16bit.dcm",
        "jpeg-lossless.dcm",
    ]
    .map(|f| dx.join(f));
    let mut a = vec!["predict", png.to_str().unwrap()];
    a.extend(files.iter().map(|f| f.to_str().unwrap()));
    a.extend(["--checkpoint", r, "--json", "--hand-crop", "off"]);
    let out = common::bone_age(&a);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let text = common::stdout(&out) + &common::stderr(&out);
    let lines: Vec<serde_json::Value> = common::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    // The PNG has no sex or age: a plain reading. Each DICOM file's tags make it clinical.
    let png_age = lines[0]["value"].as_f64().unwrap();
    for (l, f) in lines[1..].iter().zip(&files) {
        assert_eq!(l["from_file"], serde_json::json!(["sex", "age"]), "{l}");
        assert_eq!(l["sex"], "female");
        assert!(
            (l["chronological_age"]["months"].as_f64().unwrap() - 102.0).abs() < 0.1,
            "{l}"
        );
        let ba = l["bone_age_months"].as_f64().unwrap();
        println!("{}: {ba:.3} months, the PNG {png_age:.3}", f.display());
        assert!(
            (ba - png_age).abs() <= 0.5,
            "{}: {ba} vs the PNG's {png_age}",
            f.display()
        );
    }
    // A user-given sex wins, with a warning; the report carries no name or ID either.
    let out = common::bone_age(&[
        "predict",
        files[0].to_str().unwrap(),
        "--checkpoint",
        r,
        "--sex",
        "M",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let shown = common::stdout(&out);
    assert!(
        shown.contains("contradicts the file's PatientSex"),
        "{shown}"
    );
    assert!(
        shown.contains("(from the DICOM file)"),
        "the age came from the file: {shown}"
    );
    // The report's text, without its embedded images (whose base64 may spell anything).
    let html: String = std::fs::read_to_string(&report)
        .unwrap()
        .split("base64,")
        .enumerate()
        .map(|(i, part)| {
            if i == 0 {
                part
            } else {
                part.split_once('"').map_or("", |(_, rest)| rest)
            }
        })
        .collect();
    assert!(
        html.contains("mono1-12bit-window.dcm"),
        "the report names its image"
    );
    for secret in [
        "Doe",
        "Testpatient",
        "SECRET-ID-4711",
        "20150101",
        "2015-01-01",
    ] {
        assert!(
            !text.contains(secret) && !shown.contains(secret),
            "{secret} printed"
        );
        assert!(!html.contains(secret), "{secret} in the report");
    }
}
