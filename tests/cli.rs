//! The `bone-age` binary: runs without LD_LIBRARY_PATH, keeps CUDA linked,
//! resolves config with the documented precedence, and says so when a command
//! is not available yet.
use std::path::Path;
use std::process::{Command, Output};

fn bone_age(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bone-age"))
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("BONE_AGE_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run bone-age")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The torch version pinned in environment/versions.env.
fn pinned_torch() -> String {
    let env = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("environment/versions.env"),
    )
    .unwrap();
    env.lines()
        .find_map(|l| l.strip_prefix("TORCH_VERSION="))
        .expect("TORCH_VERSION in versions.env")
        .trim()
        .to_string()
}

#[test]
fn doctor_runs_without_ld_library_path_and_reports_pinned_torch() {
    let out = bone_age(&["doctor", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let torch = report["torch_version"]
        .as_str()
        .expect("torch version found");
    assert!(torch.starts_with(&pinned_torch()), "{torch}");
    assert!(report["threads"].as_i64().unwrap() >= 1);
    let loaded = report["libtorch_loaded"].as_str().unwrap();
    assert!(
        Path::new(loaded).join("libtorch_cpu.so").exists(),
        "{loaded}"
    );
    // Without LD_LIBRARY_PATH the rpath decides: the loaded lib is the linked one.
    assert_eq!(report["libtorch_loaded"], report["libtorch_built"]);
    assert_eq!(
        report["device_auto"].as_str().unwrap(),
        if report["cuda_available"].as_bool().unwrap() {
            "cuda:0"
        } else {
            "cpu"
        }
    );

    let text = stdout(&bone_age(&["doctor"]));
    for field in ["torch ", "CUDA ", "threads ", "cache dir ", "libtorch "] {
        assert!(text.contains(field), "{field:?} missing in:\n{text}");
    }
}

#[test]
fn binary_keeps_libtorch_cuda_when_the_wheel_has_it() {
    let out = bone_age(&["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lib = Path::new(report["libtorch_built"].as_str().unwrap());
    let elf = Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_bone-age")])
        .output()
        .expect("readelf (binutils) is installed");
    let dynamic = stdout(&elf);
    assert!(
        dynamic.contains("RUNPATH") || dynamic.contains("RPATH"),
        "{dynamic}"
    );
    assert_eq!(
        dynamic.contains("[libtorch_cuda.so]"),
        lib.join("libtorch_cuda.so").exists(),
        "libtorch_cuda.so must be NEEDED exactly when the linked libtorch ships it:\n{dynamic}"
    );
}

#[test]
fn config_precedence_defaults_file_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.toml");
    std::fs::write(
        &file,
        "[runtime]\nseed = 7\nthreads = 3\n[paths]\nruns_dir = \"from-file\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();

    let out = bone_age(&[
        "config",
        "--config",
        f,
        "--seed",
        "9",
        "--set",
        "paths.data_dir=/d",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let resolved: toml::Table = stdout(&out).parse().unwrap();
    let rt = resolved["runtime"].as_table().unwrap();
    let paths = resolved["paths"].as_table().unwrap();
    assert_eq!(rt["seed"].as_integer(), Some(9), "flag beats file");
    assert_eq!(rt["threads"].as_integer(), Some(3), "file beats default");
    assert_eq!(rt["device"].as_str(), Some("auto"), "default kept");
    assert_eq!(paths["runs_dir"].as_str(), Some("from-file"));
    assert_eq!(paths["data_dir"].as_str(), Some("/d"));
}

#[test]
fn bad_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, "[runtime]\nsed = 7\n").unwrap();
    let out = bone_age(&["config", "--config", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("typo.toml") && err.contains("sed"), "{err}");

    let out = bone_age(&["doctor", "--device", "tpu"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("\"tpu\""), "{}", stderr(&out));
}

#[test]
fn planned_commands_say_so_and_print_nothing() {
    for cmd in ["train", "evaluate", "predict", "download", "model"] {
        let out = bone_age(&[cmd, "--some-future-flag", "x"]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        assert!(out.stdout.is_empty(), "{cmd} printed {:?}", stdout(&out));
        assert!(
            stderr(&out).contains("not available yet"),
            "{cmd}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn data_summary_phantom_and_cache_commands() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("phantom");
    let r = root.to_str().unwrap();
    let out = bone_age(&[
        "data",
        "phantom",
        "--out",
        r,
        "--n-train",
        "12",
        "--n-test",
        "4",
        "--size",
        "40x32",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(root.join("train")).unwrap().count(), 12);

    let out = bone_age(&["data", "summary", "--data-dir", r, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["layout"], "recipe");
    assert_eq!(s["rows_with_image"], 12);
    assert_eq!(s["missing_images"], 0);
    assert_eq!(
        s["male"].as_u64().unwrap() + s["female"].as_u64().unwrap(),
        12
    );
    assert_eq!(s["age_all"]["count"], 12);

    let text = stdout(&bone_age(&[
        "data",
        "summary",
        "--data-dir",
        r,
        "--split",
        "test",
    ]));
    assert!(
        text.contains("4 in CSV, 4 with an image") && text.contains("female"),
        "{text}"
    );

    // --labels/--images reads any CSV format.
    let csv = root.join("test.csv");
    let out = bone_age(&[
        "data",
        "summary",
        "--labels",
        csv.to_str().unwrap(),
        "--images",
        root.join("test").to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let cache = dir.path().join("cache");
    let args = [
        "data",
        "cache",
        "--data-dir",
        r,
        "--set",
        &format!("paths.cache_dir={}", cache.display()),
        "--set",
        "preprocess.crop_size=[40, 32]",
        "--set",
        "preprocess.scale=1.0",
    ];
    let first = stdout(&bone_age(&args));
    let second = stdout(&bone_age(&args));
    assert!(first.starts_with("Built 12 images of 48×38"), "{first}");
    assert!(second.starts_with("Loaded"), "{second}");

    let out = bone_age(&[
        "data",
        "summary",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("train.csv"), "{}", stderr(&out));
}
