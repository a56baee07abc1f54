//! Fixtures shared by the integration tests: tiny datasets written on the fly.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{GrayImage, Luma};

/// Writes a `w`×`h` grayscale PNG whose pixels depend on `id`.
pub fn write_png(path: &Path, id: i64, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_fn(w, h, |x, y| {
        Luma([((x * 3 + y * 5 + id as u32 * 17) % 256) as u8])
    })
    .save(path)
    .unwrap();
}

/// A recipe-layout dataset: `train.csv` (`id,boneage,male`) and `train/<id>.png`.
pub fn recipe_dataset(root: &Path, rows: &[(i64, f64, bool)], size: [u32; 2]) -> PathBuf {
    let mut csv = String::from("id,boneage,male\n");
    for &(id, age, male) in rows {
        csv += &format!("{id},{age},{}\n", if male { "True" } else { "False" });
        write_png(
            &root.join("train").join(format!("{id}.png")),
            id,
            size[1],
            size[0],
        );
    }
    std::fs::write(root.join("train.csv"), csv).unwrap();
    root.to_path_buf()
}

/// `n` rows with ages spread over 12–216 months, alternating sex.
pub fn rows(n: usize) -> Vec<(i64, f64, bool)> {
    (0..n)
        .map(|i| (100 + i as i64, 12.0 + (i * 17 % 205) as f64, i % 2 == 0))
        .collect()
}

/// `../shared/data/<name>` when present (tests using it are ignored otherwise; see build.rs).
pub fn shared_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

/// Runs the `bone-age` binary without the caller's LD_LIBRARY_PATH (the rpath must do),
/// config file or log filter.
pub fn bone_age(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bone-age"))
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("BONE_AGE_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run bone-age")
}

/// `--set` flags for whole 128×128 phantom images, not the recipe's crop of a registered hand.
pub const WHOLE_IMAGE: [&str; 4] = [
    "--set",
    "preprocess.whole_image=true",
    "--set",
    "preprocess.scale=1.0",
];

/// `bone-age data phantom` of `n_train` + `n_test` 128×128 hands into `dir`, checked.
pub fn phantom_cli(dir: &Path, n_train: usize, n_test: usize) {
    let (train, test) = (n_train.to_string(), n_test.to_string());
    let d = dir.to_str().unwrap();
    let args = [
        "data",
        "phantom",
        "--out",
        d,
        "--n-train",
        &train,
        "--n-test",
        &test,
        "--size",
        "128x128",
    ];
    let out = bone_age(&args);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `bone-age train` for one epoch in batches of 8 on `data` into `out` (add the flags).
pub fn one_epoch<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    let args = [
        "train",
        "--data-dir",
        data,
        "--out",
        out,
        "--epochs",
        "1",
        "--batch-size",
        "8",
    ];
    args.to_vec()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// libtorch's random generator is process-global: tests that train take turns, so
/// one test's dropout masks never depend on another's progress.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// A phantom dataset at 128×128 (the smallest m46 input) and a config for it.
pub fn phantom(dir: &Path, n_train: usize) -> (PathBuf, bone_age::Config) {
    let data = dir.join("data");
    bone_age::phantom::write_dataset(
        &data,
        &bone_age::PhantomSpec {
            n_train,
            n_test: 40,
            size: [128, 128],
            seed: 7,
        },
    )
    .unwrap();
    let mut c = bone_age::Config::default();
    for (k, v) in [
        ("runtime.device", "cpu"),
        ("preprocess.whole_image", "true"),
        ("preprocess.scale", "1.0"),
        ("preprocess.margin", "0.1"),
        ("folds.n_folds", "5"),
        ("folds.val_fold", "5"),
        ("loader.batch_size", "8"),
    ] {
        c.set(k, v).unwrap();
    }
    c.paths.cache_dir = Some(dir.join("cache"));
    (data, c)
}

pub fn quiet() -> bone_age::TrainOptions {
    bone_age::TrainOptions {
        progress: false,
        ..Default::default()
    }
}

/// The project venv's Python (torch, tensorboard), which `make setup` installs.
pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("BONE_AGE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| bone_age::files::default_cache_dir().join("venv"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} not found: run `make setup` (the test needs the project venv)",
        py.display()
    );
    py
}

/// An m46 on the CPU with a fresh variable store.
pub fn net(input: [i64; 3], config: bone_age::ModelConfig) -> (tch::nn::VarStore, bone_age::M46) {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let m = bone_age::M46::new(&vs.root(), input, config).unwrap();
    (vs, m)
}
