//! Reliability: a kill or a full disk at every checkpoint-write step resumes to the
//! weights of an uninterrupted run, and every bad input of the hostile trial (issue 10)
//! gets a clear error, a warning, or a correct result.
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use bone_age::commit::Fault;
use bone_age::{Checkpoint, Config, PhantomSpec, TrainOptions};
use common::{bone_age, stderr, stdout};
use tch::{Device, Tensor};

/// A small phantom set at 128×128 and a config file for it (whole image, 2 epochs, 1 thread).
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    config: PathBuf,
    /// A checkpoint trained for one epoch on `data`.
    checkpoint: PathBuf,
}

const CONFIG: &str = "[runtime]\ndevice = \"cpu\"\nthreads = 1\n\
    [folds]\nn_folds = 4\nval_fold = 4\n\
    [preprocess]\nwhole_image = true\nscale = 1.0\nmargin = 0.1\n\
    [loader]\nbatch_size = 8\n\
    [train]\nepochs = 2\nlr = 3e-4\nschedule = { kind = \"cosine\", min_lr = 1e-5 }\n";

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        let spec = PhantomSpec {
            n_train: 24,
            n_test: 8,
            size: [128, 128],
            seed: 3,
        };
        bone_age::phantom::write_dataset(&data, &spec).unwrap();
        let config = root.join("config.toml");
        let cache = root.join("cache");
        std::fs::write(
            &config,
            format!(
                "{CONFIG}[paths]\ncache_dir = {:?}\n",
                cache.to_str().unwrap()
            ),
        )
        .unwrap();
        let mut c = Config::load(Some(&config)).unwrap();
        c.train.epochs = 1;
        let run = root.join("fixture-run");
        let opts = TrainOptions::default();
        let summary = bone_age::train(&c, &data, &run, &opts, |_| {}).unwrap();
        Fixture {
            _dir: dir,
            root,
            data,
            config,
            checkpoint: summary.best,
        }
    })
}

impl Fixture {
    fn train(&self, out: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "--config",
            self.config.to_str().unwrap(),
            "train",
            "--data-dir",
            self.data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        bone_age(&args)
    }

    /// The CLI with the fixture's config (CPU, one thread, its cache directory).
    fn cli(&self, args: &[&str]) -> Output {
        let mut a = vec!["--config", self.config.to_str().unwrap()];
        a.extend(args);
        bone_age(&a)
    }

    /// `train` on another dataset directory.
    fn train_on(&self, data: &Path, out: &Path) -> Output {
        self.cli(&[
            "train",
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    }

    fn ckpt(&self) -> &str {
        self.checkpoint.to_str().unwrap()
    }

    /// A copy of the fixture checkpoint in `dir`, for tampering with.
    fn copy_checkpoint(&self, dir: &Path) -> PathBuf {
        let w = dir.join("m.safetensors");
        std::fs::copy(&self.checkpoint, &w).unwrap();
        std::fs::copy(
            self.checkpoint.with_extension("json"),
            w.with_extension("json"),
        )
        .unwrap();
        w
    }
}

fn weights(path: &Path) -> Vec<(String, Tensor)> {
    let mut v = Tensor::read_safetensors(path).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn same_weights(a: &Path, b: &Path) -> bool {
    let (a, b) = (weights(a), weights(b));
    a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|((n, x), (m, y))| n == m && x.equal(y))
}

fn epochs_in_metrics(run: &Path) -> Vec<usize> {
    bone_age::metrics::read_metrics(run)
        .unwrap()
        .iter()
        .map(|m| m.epoch)
        .collect()
}

/// Entries of a run directory that are not part of a finished run.
fn leftovers(run: &Path) -> Vec<String> {
    std::fs::read_dir(run)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.starts_with('.') || n.ends_with(".tmp"))
        .collect()
}

#[test]
fn a_kill_at_every_checkpoint_step_resumes_to_the_same_weights() {
    let f = fixture();
    let reference = f.root.join("kill-reference");
    let out = f.train(&reference, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // One kill point: killed at step n, then resumed; Err(()) when step n does not exist.
    let kill_and_resume = |n: usize| -> Result<(), ()> {
        let run = f.root.join(format!("kill-{n}"));
        let fault = format!("kill:{n}");
        let killed = f.train(&run, &["--inject-fault", &fault]);
        if killed.status.success() {
            return Err(()); // n is past the last step: the run finished untouched
        }
        assert!(
            stderr(&killed).contains(&format!("killed at step {n}")),
            "step {n}: {}",
            stderr(&killed)
        );
        let resumed = f.train(&run, &["--resume"]);
        assert!(
            resumed.status.success(),
            "resume after kill at step {n}: {}",
            stderr(&resumed)
        );
        for file in ["last.safetensors", "best.safetensors"] {
            assert!(
                same_weights(&reference.join(file), &run.join(file)),
                "kill at step {n}: {file} differs from the uninterrupted run"
            );
        }
        assert_eq!(epochs_in_metrics(&run), [1, 2], "kill at step {n}");
        assert_eq!(leftovers(&run), Vec::<String>::new(), "kill at step {n}");
        std::fs::remove_dir_all(&run).unwrap();
        Ok(())
    };
    // Two kill points at a time (each run uses one thread).
    let mut kills = 0;
    for n in (1..).step_by(2) {
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| kill_and_resume(n));
            let b = s.spawn(|| kill_and_resume(n + 1));
            (a.join().unwrap(), b.join().unwrap())
        });
        kills += usize::from(a.is_ok()) + usize::from(b.is_ok());
        if a.is_err() || b.is_err() {
            break;
        }
    }
    // config.toml, then per epoch 5 (or 7, with best) files staged, the commit, the moves, the cleanup.
    assert!(
        kills >= 25,
        "only {kills} kill points: the steps are not counted"
    );
    eprintln!("killed and resumed at each of {kills} steps: all ended with the reference weights");
}

#[test]
fn a_full_disk_at_any_step_keeps_the_previous_set_loadable_and_says_so() {
    let f = fixture();
    let mut config = Config::load(Some(&f.config)).unwrap();
    config.train.epochs = 2;
    let quiet = TrainOptions::default();
    let reference = f.root.join("disk-reference");
    bone_age::train(&config, &f.data, &reference, &quiet, |_| {}).unwrap();
    // Steps: config.toml (1), epoch 1's set (2–17: 7 writes, the commit, 7 moves, the
    // cleanup), then epoch 2's (18–: 5 or 7 writes, ...).
    let mut failed = 0;
    for n in [3, 9, 12, 18, 20, 22] {
        let run = f.root.join(format!("disk-{n}"));
        let full = TrainOptions {
            fault: Some(Fault::DiskFull(n)),
            ..TrainOptions::default()
        };
        let Err(e) = bone_age::train(&config, &f.data, &run, &full, |_| {}) else {
            panic!("a full disk at step {n} went unnoticed");
        };
        failed += 1;
        let msg = e.to_string();
        if n == 18 {
            assert!(msg.contains("epoch 1") && msg.contains("intact"), "{msg}");
        }
        assert!(msg.contains("No space left on device"), "step {n}: {msg}");
        if run.join("last.safetensors").exists() {
            let ckpt = Checkpoint::load(&run.join("last.safetensors"), Device::Cpu).unwrap();
            assert!(ckpt.meta.epoch >= 1, "step {n}");
            assert!(
                msg.contains("intact") || msg.contains("epoch"),
                "step {n}: {msg}"
            );
        }
        let resume = TrainOptions {
            resume: true,
            ..TrainOptions::default()
        };
        bone_age::train(&config, &f.data, &run, &resume, |_| {}).unwrap();
        assert!(
            same_weights(
                &reference.join("last.safetensors"),
                &run.join("last.safetensors")
            ),
            "full disk at step {n}: the resumed run differs"
        );
        assert_eq!(epochs_in_metrics(&run), [1, 2], "step {n}");
        assert_eq!(leftovers(&run), Vec::<String>::new(), "step {n}");
    }
    assert_eq!(failed, 6);
}

#[test]
fn predict_and_evaluate_bring_any_image_size_to_the_checkpoint_input() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    // A large, portrait radiograph-like image for a 128×128 whole-image model.
    let img = f.data.join("test/25.png");
    let big = dir.path().join("big.png");
    let small = image::open(&img).unwrap().to_luma8();
    image::imageops::resize(&small, 1514, 2044, image::imageops::FilterType::Triangle)
        .save(&big)
        .unwrap();
    let ckpt = Checkpoint::load(&f.checkpoint, Device::Cpu).unwrap();
    let a = bone_age::predict::predict_file(&ckpt, &img, None).unwrap();
    let b = bone_age::predict::predict_file(&ckpt, &big, None).unwrap();
    // The whole image is read (resized to the trained size), not a central 128×128 patch:
    // the network sees nearly the same pixels, so nearly the same age.
    let pre = ckpt.preprocess().unwrap();
    let seen = |p: &Path| {
        pre.apply(&bone_age::preprocess::decode_gray(p, u64::MAX).unwrap())
            .unwrap()
    };
    let diff = seen(&img)
        .iter()
        .zip(seen(&big).iter())
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .sum::<f64>()
        / seen(&img).len() as f64;
    assert!(
        diff < 4.0,
        "mean grey-level difference of the network inputs: {diff}"
    );
    assert!(
        (a.raw - b.raw).abs() < 15.0,
        "128×128 {:.1} vs 2044×1514 {:.1}",
        a.raw,
        b.raw
    );
    assert!(
        b.warnings.iter().any(|w| w.contains("aspect ratio")),
        "{:?}",
        b.warnings
    );
    // A checkpoint whose preprocessing cannot end at its input size is an error.
    let bad = f.copy_checkpoint(dir.path());
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bad.with_extension("json")).unwrap())
            .unwrap();
    meta["config"]["preprocess"]["whole_image"] = false.into();
    meta["config"]["preprocess"]["crop_size"] = serde_json::json!([200, 200]);
    std::fs::write(bad.with_extension("json"), meta.to_string()).unwrap();
    let out = f.cli(&[
        "predict",
        img.to_str().unwrap(),
        "--checkpoint",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("[200, 200]") && stderr(&out).contains("[128, 128]"),
        "{}",
        stderr(&out)
    );
    // evaluate on images of another size: the same stretch, so the same predictions.
    let other = dir.path().join("other");
    std::fs::create_dir_all(other.join("train")).unwrap();
    std::fs::copy(f.data.join("test.csv"), other.join("train.csv")).unwrap();
    for e in std::fs::read_dir(f.data.join("test")).unwrap() {
        let p = e.unwrap().path();
        let i = image::open(&p).unwrap().to_luma8();
        image::imageops::resize(&i, 300, 400, image::imageops::FilterType::Triangle)
            .save(other.join("train").join(p.file_name().unwrap()))
            .unwrap();
    }
    let out = f.cli(&[
        "evaluate",
        "--checkpoint",
        f.ckpt(),
        "--labels",
        other.join("train.csv").to_str().unwrap(),
        "--images",
        other.join("train").to_str().unwrap(),
        "--json",
        "--out",
        dir.path().join("eval").to_str().unwrap(),
        "--set",
        &format!("paths.cache_dir={}", dir.path().join("cache").display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["images"], 8);
}

#[test]
fn a_decompression_bomb_first_is_refused_by_name_and_the_others_are_not_blamed() {
    let dir = tempfile::tempdir().unwrap();
    let rows = common::rows(12);
    common::recipe_dataset(dir.path(), &rows, [40, 32]);
    // The first row's image claims 1,000,000 × 51,840 pixels in its header.
    let bomb = dir.path().join(format!("train/{}.png", rows[0].0));
    let mut png = Vec::new();
    png.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&1_000_000u32.to_be_bytes());
    ihdr.extend_from_slice(&51_840u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    for (kind, data) in [
        (&b"IDAT"[..], &b"\x78\x9c\x03\x00\x00\x00\x00\x01"[..]),
        (b"IEND", b""),
    ] {
        let chunk = [kind, data].concat();
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&crc32fast::hash(&chunk).to_be_bytes());
    }
    std::fs::write(&bomb, png).unwrap();
    // And one image of another size, which whole-image mode cannot batch.
    common::write_png(
        &dir.path().join(format!("train/{}.png", rows[5].0)),
        5,
        10,
        10,
    );
    let cache = format!("paths.cache_dir={}", dir.path().join("cache").display());
    let out = bone_age(&[
        "data",
        "cache",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--set",
        &cache,
        "--set",
        "preprocess.whole_image=true",
        "--set",
        "preprocess.scale=1.0",
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("2 of 12 images") && err.contains("decompression bomb"),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}.png", rows[0].0)) && err.contains(&format!("{}.png", rows[5].0)),
        "{err}"
    );
    assert!(err.contains("10 of 12 images give 38×48"), "{err}");
}

#[test]
fn a_csv_without_bone_ages_is_unlabelled_and_refused_for_training_and_scoring() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let csv = std::fs::read_to_string(f.data.join("train.csv")).unwrap();
    let unlabelled: String = csv
        .lines()
        .map(|l| {
            let v: Vec<&str> = l.split(',').collect();
            format!("{},{}\n", v[0], v[2])
        })
        .collect();
    std::fs::write(dir.path().join("train.csv"), unlabelled).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(f.data.join("train"), dir.path().join("train")).unwrap();
    let d = dir.path().to_str().unwrap();
    let out = f.train_on(dir.path(), &dir.path().join("run"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no bone-age column") && stderr(&out).contains("train.csv"),
        "{}",
        stderr(&out)
    );
    let out = f.cli(&[
        "evaluate",
        "--checkpoint",
        f.ckpt(),
        "--data-dir",
        d,
        "--split",
        "train",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no bone ages"), "{}", stderr(&out));
    let summary = bone_age(&["data", "summary", "--data-dir", d, "--json"]);
    assert!(
        summary.status.success(),
        "an unlabelled set still loads: {}",
        stderr(&summary)
    );
}

#[test]
fn config_values_that_would_fail_late_are_refused_up_front() {
    let f = fixture();
    for (set, key) in [
        ("train.lr=-1", "train.lr"),
        ("train.lr=nan", "train.lr"),
        (
            "train.schedule={ kind = \"cosine\", min_lr = -1e-6 }",
            "train.schedule.min_lr",
        ),
        ("train.epochs=0", "train.epochs"),
    ] {
        let out = bone_age(&["config", "--set", set]);
        assert!(
            !out.status.success() && stderr(&out).contains(key),
            "{set}: {}",
            stderr(&out)
        );
        let run = f.root.join(format!("bad-{}", key.replace('.', "-")));
        let out = f.train(&run, &["--set", set]);
        assert!(
            !out.status.success() && stderr(&out).contains(key),
            "{set}: {}",
            stderr(&out)
        );
        assert!(!run.join("last.safetensors").exists());
    }
    let out = f.train(
        &f.root.join("no-batch"),
        &["--set", "loader.drop_last=true", "--batch-size", "64"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no full batch"), "{}", stderr(&out));
}

#[test]
fn tiny_images_bad_sidecars_and_broken_weights_are_errors_or_warnings_not_panics() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let tiny = dir.path().join("tiny.png");
    common::write_png(&tiny, 1, 10, 10);
    let black = dir.path().join("black.png");
    image::GrayImage::new(128, 128).save(&black).unwrap();
    let t = tiny.to_str().unwrap();
    let out = f.cli(&[
        "predict",
        t,
        black.to_str().unwrap(),
        "--checkpoint",
        f.ckpt(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("only 10×10 pixels"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("no contrast"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));

    // A sidecar that says 3 channels.
    let w = f.copy_checkpoint(dir.path());
    let side = w.with_extension("json");
    let text = std::fs::read_to_string(&side).unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(&text).unwrap();
    meta["input_shape"] = serde_json::json!([3, 128, 128]);
    std::fs::write(&side, meta.to_string()).unwrap();
    let out = f.cli(&["predict", t, "--checkpoint", w.to_str().unwrap()]);
    assert!(
        !out.status.success() && !stderr(&out).contains("panicked"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("1 grey channel"), "{}", stderr(&out));
    // Weights of another shape than the sidecar says: named, without libtorch's C++ frames.
    meta["input_shape"] = serde_json::json!([1, 300, 300]);
    std::fs::write(&side, meta.to_string()).unwrap();
    let out = f.cli(&["predict", t, "--checkpoint", w.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("fc1.weight"), "{err}");
    assert!(
        !err.contains("frame #") && !err.contains("Exception raised"),
        "{err}"
    );
    // A truncated weights file.
    std::fs::write(&side, text).unwrap();
    std::fs::write(&w, b"not safetensors").unwrap();
    let out = f.cli(&["predict", t, "--checkpoint", w.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.contains("m.safetensors"),
        "{err}"
    );
    assert!(
        !err.contains("frame #") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn predictions_outside_the_trained_range_are_kept_to_it_and_flagged() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let w = f.copy_checkpoint(dir.path());
    // fc3's bias at −10 puts every output at −10 · 120 + 120 = −1080 months.
    let tensors: Vec<(String, Tensor)> = weights(&w)
        .into_iter()
        .map(|(n, t)| {
            if n == "fc3.bias" {
                (n, t.zeros_like() - 10.0)
            } else {
                (n, t)
            }
        })
        .collect();
    Tensor::write_safetensors(&tensors, &w).unwrap();
    let img = f.data.join("test/25.png");
    let out = f.cli(&[
        "predict",
        img.to_str().unwrap(),
        "--checkpoint",
        w.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["value"], 0.0);
    assert!(
        r["raw"].as_f64().unwrap() < -500.0 && r["clamped"] == true,
        "{r}"
    );
    assert!(r["warnings"].to_string().contains("outside"), "{r}");
    let text = f.cli(&[
        "predict",
        img.to_str().unwrap(),
        "--checkpoint",
        w.to_str().unwrap(),
    ]);
    assert!(
        stdout(&text).contains("0.0 months\t0 y 0 m\t(network output"),
        "{}",
        stdout(&text)
    );
}

#[test]
fn a_stored_recalibration_is_applied_by_evaluate_and_predict_unless_turned_off() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let w = f.copy_checkpoint(dir.path());
    // A recalibration that doubles and shifts: months ↦ 2 · months − 100.
    let sidecar = w.with_extension("json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sidecar).unwrap()).unwrap();
    meta["calibration"] = serde_json::json!({"slope": 2.0, "intercept": -100.0, "n": 8});
    std::fs::write(&sidecar, meta.to_string()).unwrap();
    let img = f.data.join("test/25.png");
    let predict = |extra: &[&str]| {
        let mut a = vec!["predict", img.to_str().unwrap(), "--checkpoint"];
        a.push(w.to_str().unwrap());
        a.push("--json");
        a.extend(extra);
        let out = f.cli(&a);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (on, off) = (predict(&[]), predict(&["--no-calibration"]));
    let (raw_on, raw_off) = (on["raw"].as_f64().unwrap(), off["raw"].as_f64().unwrap());
    assert!(
        (raw_on - (2.0 * raw_off - 100.0)).abs() < 1e-6,
        "{on} {off}"
    );
    assert_eq!(
        (&on["calibrated"], &off["calibrated"]),
        (&true.into(), &false.into())
    );
    let evaluate = |extra: &[&str]| {
        let out_dir = dir.path().join(format!("eval{}", extra.len()));
        let mut a = vec![
            "evaluate",
            "--checkpoint",
            w.to_str().unwrap(),
            "--data-dir",
        ];
        a.extend([
            f.data.to_str().unwrap(),
            "--split",
            "test",
            "--json",
            "--out",
        ]);
        a.push(out_dir.to_str().unwrap());
        a.extend(extra);
        let out = f.cli(&a);
        assert!(out.status.success(), "{}", stderr(&out));
        let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let preds = std::fs::read_to_string(out_dir.join("predictions.csv")).unwrap();
        (e, preds)
    };
    let ((e_on, p_on), (e_off, p_off)) = (evaluate(&[]), evaluate(&["--no-calibration"]));
    assert_eq!(e_on["calibration"]["slope"], 2.0, "{e_on}");
    assert!(e_off["calibration"].is_null(), "{e_off}");
    assert_ne!(e_on["mae_months"], e_off["mae_months"]);
    assert_ne!(p_on, p_off);
}

#[test]
fn one_bad_file_does_not_stop_the_others() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\ngarbage").unwrap();
    let good = [f.data.join("test/25.png"), f.data.join("test/26.png")];
    let out = f.cli(&[
        "predict",
        good[0].to_str().unwrap(),
        corrupt.to_str().unwrap(),
        good[1].to_str().unwrap(),
        "--checkpoint",
        f.ckpt(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines.len(), 2, "both good images predicted: {lines:?}");
    assert!(lines[1].contains("26.png"));
    assert!(
        stderr(&out).contains("corrupt.png") && stderr(&out).contains("1 of 3"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn evaluate_defaults_to_held_out_images_and_says_which() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let d = f.data.to_str().unwrap();
    let json = |args: &[&str]| {
        let mut a = vec!["evaluate", "--checkpoint", f.ckpt(), "--json", "--out"];
        let out_dir = dir.path().join(format!("e{}", args.len()));
        let o = out_dir.to_str().unwrap().to_string();
        a.push(&o);
        a.extend(args);
        let out = f.cli(&a);
        assert!(out.status.success(), "{}", stderr(&out));
        (
            serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
            stderr(&out),
        )
    };
    let (m, err) = json(&["--data-dir", d]);
    assert_eq!(m["images"], 8, "the labelled test split");
    assert!(
        m["set"].as_str().unwrap().contains("test.csv") && err.contains("test.csv"),
        "{m} {err}"
    );
    // Without a test split: the checkpoint's held-out fold, never its training images.
    let no_test = dir.path().join("no-test");
    std::fs::create_dir_all(&no_test).unwrap();
    std::fs::copy(f.data.join("train.csv"), no_test.join("train.csv")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(f.data.join("train"), no_test.join("train")).unwrap();
    let (m, _) = json(&["--data-dir", no_test.to_str().unwrap()]);
    assert_eq!(m["images"], 6, "fold 4 of 4 of 24");
    assert!(
        m["set"].as_str().unwrap().contains("held-out fold 4 of 4"),
        "{m}"
    );
}

#[test]
fn errors_are_printed_once_and_without_colour_codes() {
    let out = bone_age(&[
        "data",
        "summary",
        "--labels",
        "/nonexistent/x.csv",
        "--images",
        "/nonexistent",
    ]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    let dir = tempfile::tempdir().unwrap();
    common::recipe_dataset(dir.path(), &common::rows(3), [8, 8]);
    std::fs::remove_file(dir.path().join("train/101.png")).unwrap();
    let out = bone_age(&[
        "data",
        "summary",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains("no image"),
        "a warning is logged: {}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains('\x1b'),
        "ANSI codes on a pipe: {:?}",
        stderr(&out)
    );
}

#[test]
fn messages_about_checkpoints_and_resuming_are_true() {
    let f = fixture();
    // A loss that diverges in epoch 1 leaves no checkpoint, and says so.
    let run = f.root.join("diverge-1");
    let out = f.train(&run, &["--lr", "1e30"]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("epoch 1"), "{err}");
    assert!(
        err.contains("no checkpoint was saved") && !err.contains("intact"),
        "{err}"
    );
    // A finished run is extended by --epochs; other changes are refused.
    let run = f.root.join("extend");
    assert!(f.train(&run, &["--epochs", "1"]).status.success());
    let out = f.train(&run, &["--resume", "--lr", "1e-2"]);
    assert!(
        !out.status.success() && stderr(&out).contains("train.lr"),
        "{}",
        stderr(&out)
    );
    let out = f.train(&run, &["--resume", "--epochs", "1"]);
    assert!(
        out.status.success() && stdout(&out).contains("already finished 1 of 1"),
        "{}",
        stdout(&out)
    );
    let out = f.train(&run, &["--resume", "--epochs", "2", "--threads", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("epoch   2") && stderr(&out).contains("train.epochs = 2"),
        "{}",
        stderr(&out)
    );
    assert_eq!(epochs_in_metrics(&run), [1, 2]);
}
