//! The `bone-age` binary: runs without LD_LIBRARY_PATH, keeps CUDA linked,
//! resolves config with the documented precedence, and says so when a command
//! is not available yet.
mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{bone_age, stderr, stdout};

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

#[test]
fn predict_without_a_trained_checkpoint_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("runs/x/best.safetensors");
    let out = bone_age(&[
        "predict",
        "hand.png",
        "--checkpoint",
        ckpt.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(ckpt.to_str().unwrap()) && err.contains("train a model first"),
        "{err}"
    );
}

#[test]
fn model_train_evaluate_predict_commands() {
    let out = bone_age(&["model", "--input-shape", "1,500,375"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(
        table.contains("24751201") && table.contains("block6 maxpool3×3/2"),
        "{table}"
    );
    let sex = stdout(&bone_age(&[
        "model",
        "--input-shape",
        "1,128,128",
        "--model-type",
        "sex",
        "--sex-input",
    ]));
    assert!(
        sex.contains(&(6_663_265 + 2048).to_string()) && sex.contains("sigmoid"),
        "{sex}"
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let ok = |o: &Output| assert!(o.status.success(), "{}", stderr(o));
    common::phantom_cli(&data, 40, 8);
    let cache = format!("paths.cache_dir={}", dir.path().join("cache").display());
    let common = [
        "--device",
        "cpu",
        "--set",
        &cache,
        "--set",
        "preprocess.whole_image=true",
        "--set",
        "preprocess.scale=1.0",
        "--set",
        "folds.n_folds=5",
        "--set",
        "folds.val_fold=5",
    ];
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    let mut args = common::one_epoch(d, r);
    args.extend(common);
    let out = bone_age(&args);
    ok(&out);
    assert!(
        stdout(&out).contains("epoch   1") && stdout(&out).contains("val MAE"),
        "{}",
        stdout(&out)
    );
    let config: toml::Table = std::fs::read_to_string(run.join("config.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        config["train"]["epochs"].as_integer(),
        Some(1),
        "the resolved config is written"
    );

    let again = bone_age(&args);
    assert!(
        !again.status.success() && stderr(&again).contains("--resume"),
        "{}",
        stderr(&again)
    );

    let ckpt = run.join("best.safetensors");
    let c = ckpt.to_str().unwrap();
    let eval_dir = dir.path().join("eval");
    let mut args = vec![
        "evaluate",
        "--checkpoint",
        c,
        "--data-dir",
        d,
        "--split",
        "test",
        "--json",
        "--out",
        eval_dir.to_str().unwrap(),
    ];
    args.extend(common);
    let out = bone_age(&args);
    ok(&out);
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["images"], 8);
    assert!(
        m["mae_months"].as_f64().unwrap() > 0.0 && m["median_abs_error_months"].as_f64().is_some()
    );
    let csv = std::fs::read_to_string(eval_dir.join("predictions.csv")).unwrap();
    assert_eq!(csv.lines().count(), 9);
    assert!(csv.starts_with("id,male,boneage,predicted,abs_error"));
    for f in ["scatter.png", "residuals.png"] {
        assert!(image::image_dimensions(eval_dir.join(f)).is_ok(), "{f}");
    }
    // The same figures as SVG from the predictions file, and the curves of the run.
    let p = eval_dir.join("predictions.csv");
    let svg_dir = dir.path().join("svg");
    let s = svg_dir.to_str().unwrap();
    ok(&bone_age(&[
        "plot",
        "evaluation",
        p.to_str().unwrap(),
        "--out-dir",
        s,
        "--format",
        "svg",
    ]));
    let scatter = std::fs::read_to_string(svg_dir.join("scatter.svg")).unwrap();
    let mae = m["mae_months"].as_f64().unwrap();
    assert!(
        scatter.contains(&format!("MAE {mae:.2} months (n = 8)")),
        "the evaluation's MAE"
    );
    let curves = dir.path().join("curves.svg");
    let r = run.to_str().unwrap();
    ok(&bone_age(&[
        "plot",
        "curves",
        r,
        "--out",
        curves.to_str().unwrap(),
    ]));
    assert!(std::fs::read_to_string(&curves)
        .unwrap()
        .contains("Validation MAE"));
    let bad = bone_age(&["plot", "evaluation", d]);
    assert!(
        !bad.status.success() && stderr(&bad).contains(d),
        "{}",
        stderr(&bad)
    );

    let img = data.join("test/41.png");
    let out = bone_age(&[
        "predict",
        img.to_str().unwrap(),
        "--checkpoint",
        c,
        "--device",
        "cpu",
    ]);
    ok(&out);
    let line = stdout(&out);
    assert!(
        line.contains("months") && line.contains(" y ") && line.contains("41.png"),
        "{line}"
    );

    let out = bone_age(&[
        "predict",
        dir.path().join("nope.png").to_str().unwrap(),
        "--checkpoint",
        c,
    ]);
    assert!(
        !out.status.success() && stderr(&out).contains("nope.png"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn clinical_readings_reports_and_visits() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let ok = |o: &Output| assert!(o.status.success(), "{}", stderr(o));
    common::phantom_cli(&data, 48, 4);
    let cache = format!("paths.cache_dir={}", dir.path().join("cache").display());
    let run = dir.path().join("run");
    let r = run.to_str().unwrap();
    let mut args = common::one_epoch(d, r);
    args.extend([
        "--device",
        "cpu",
        "--set",
        &cache,
        "--set",
        "folds.n_folds=2",
        "--set",
        "folds.val_fold=2",
    ]);
    args.extend(common::WHOLE_IMAGE);
    ok(&bone_age(&args));
    // Training stored the 95% interval of the validation residuals in the sidecar.
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("last.json")).unwrap()).unwrap();
    let iv = &meta["interval"];
    assert_eq!(iv["n"], 24, "{meta}");
    assert!(
        iv["low"].as_f64().unwrap() < iv["high"].as_f64().unwrap(),
        "{iv}"
    );
    let c = run.join("last.safetensors");
    let c = c.to_str().unwrap();
    let img = data.join("test/49.png");
    let i = img.to_str().unwrap();
    let predict = |extra: &[&str]| {
        let mut args = vec!["predict", i, "--checkpoint", c, "--device", "cpu"];
        args.extend(extra);
        bone_age(&args)
    };

    // The reading, as text and as JSON, from an age or from dates.
    let out = predict(&["--sex", "F", "--age", "7y2m"]);
    ok(&out);
    let text = stdout(&out);
    for want in [
        "Bone age",
        "Model's 95% interval",
        "86.0 months (7 y 2 m)",
        "Z-score",
        "Determination",
        "Cleveland",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    let out = predict(&[
        "--sex",
        "F",
        "--birth",
        "2019-01-10",
        "--exam",
        "2026-03-10",
        "--centring",
        "brush-mean",
        "--json",
    ]);
    ok(&out);
    let r: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(r["chronological_age"]["months"], 86.0);
    assert_eq!(r["chronological_age"]["birth_date"], "2019-01-10");
    assert_eq!(r["centring"], "brush_mean");
    assert_eq!(r["reference"]["ca_months"], 86.0);
    let (ba, mean, sd) = (
        r["bone_age_months"].as_f64().unwrap(),
        r["reference"]["mean_months"].as_f64().unwrap(),
        r["reference"]["sd_months"].as_f64().unwrap(),
    );
    assert!(
        (r["z"].as_f64().unwrap() - (ba - mean) / sd).abs() < 1e-9,
        "{r}"
    );
    assert!(["delayed", "normal", "advanced"].contains(&r["determination"].as_str().unwrap()));
    let [lo, hi] = [0, 1].map(|k| r["bone_age_interval"][k].as_f64().unwrap());
    assert!(lo <= ba && ba <= hi, "{r}");
    // A sidecar from before intervals were stored: the reading says so, and re-evaluating
    // on the validation fold stores the same interval training did.
    let sidecar = run.join("last.json");
    let mut old = meta.clone();
    old.as_object_mut().unwrap().remove("interval");
    std::fs::write(&sidecar, serde_json::to_string(&old).unwrap()).unwrap();
    let out = predict(&["--sex", "F", "--age", "86", "--json"]);
    let r: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert!(
        r["bone_age_interval"].is_null()
            && r["interval_note"].as_str().unwrap().starts_with("unknown"),
        "{r}"
    );
    let ev = dir.path().join("ev");
    let out = bone_age(&[
        "evaluate",
        "--checkpoint",
        c,
        "--validation",
        "--data-dir",
        d,
        "--store-interval",
        "--out",
        ev.to_str().unwrap(),
        "--device",
        "cpu",
        "--set",
        &cache,
    ]);
    ok(&out);
    assert!(
        stderr(&out).contains("stored the 95% interval"),
        "{}",
        stderr(&out)
    );
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sidecar).unwrap()).unwrap();
    for k in ["low", "high"] {
        let (a, b) = (
            stored["interval"][k].as_f64().unwrap(),
            iv[k].as_f64().unwrap(),
        );
        assert!((a - b).abs() < 1e-3, "{k}: stored {a}, trained {b}");
    }
    // Without an age, the bone age alone, as before.
    let plain = stdout(&predict(&["--sex", "F"]));
    assert!(
        plain.contains("months") && !plain.contains("Z-score"),
        "{plain}"
    );

    // Bad input names what is wrong.
    for (args, want) in [
        (vec!["--sex", "F", "--age", "7y14m"], "7y14m"),
        (vec!["--sex", "F", "--age=-3"], "negative"),
        (
            vec![
                "--sex",
                "F",
                "--birth",
                "2020-05-05",
                "--exam",
                "2020-05-04",
            ],
            "before the birth date",
        ),
        (vec!["--sex", "X", "--age", "7y"], "M or F"),
        (vec!["--age", "7y"], "--sex"),
    ] {
        let out = predict(&args);
        assert!(
            !out.status.success() && stderr(&out).contains(want),
            "{args:?}: {}",
            stderr(&out)
        );
    }

    // One reading's report.
    let html = dir.path().join("reading.html");
    ok(&predict(&[
        "--sex",
        "M",
        "--age",
        "120",
        "--report",
        html.to_str().unwrap(),
    ]));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("not a medical device") && page.contains("120.0 months"),
        "report"
    );

    // Batch visits: two patients, one missing image.
    let csv = data.join("visits.csv");
    std::fs::write(
        &csv,
        "patient,image,sex,birth_date,exam_date\n\
         p1,test/50.png,F,2016-02-01,2021-02-01\n\
         p1,test/49.png,F,2016-02-01,2019-08-01\n\
         p2,test/51.png,M,2010-06-15,2022-01-20\n\
         p2,test/404.png,M,2010-06-15,2023-01-20\n",
    )
    .unwrap();
    let out_dir = dir.path().join("visits");
    let o = out_dir.to_str().unwrap();
    let visits = |csv: &Path, extra: &[&str]| {
        let mut args = vec![
            "predict",
            "--visits",
            csv.to_str().unwrap(),
            "--out",
            o,
            "--checkpoint",
            c,
            "--device",
            "cpu",
        ];
        args.extend(extra);
        bone_age(&args)
    };
    let out = visits(&csv, &["--report"]);
    ok(&out);
    assert!(
        stdout(&out).contains("read 3 of 4 visits (1 missing, 0 failed) for 2 patient(s)"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("line 5") && stderr(&out).contains("404.png"),
        "{}",
        stderr(&out)
    );
    let readings = std::fs::read_to_string(out_dir.join("readings.csv")).unwrap();
    let lines: Vec<&str> = readings.lines().collect();
    assert_eq!(lines.len(), 5, "{readings}");
    assert!(lines[0].starts_with("line,patient,image,status,error,sex,birth_date,exam_date,chronological_age_months,bone_age_months"));
    assert!(
        lines[2].contains(",read,")
            && lines[2].contains("2019-08-01")
            && lines[2].contains(",42.00,"),
        "{}",
        lines[2]
    );
    assert!(lines[4].contains(",missing,"), "{}", lines[4]);
    for f in [
        "charts/p1.png",
        "charts/p2.png",
        "reports/p1.html",
        "reports/p2.html",
        "summary.json",
    ] {
        assert!(out_dir.join(f).is_file(), "{f}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        (summary["read"].clone(), summary["missing"].clone()),
        (3.into(), 1.into())
    );

    // A re-run replaces the output whole: p2's files go with p2's rows.
    let one = data.join("one.csv");
    std::fs::write(&one, "patient,image,sex,age\np1,test/50.png,F,5y\n").unwrap();
    ok(&visits(&one, &[]));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("readings.csv"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    assert!(!out_dir.join("charts/p2.png").exists() && !out_dir.join("reports").exists());

    // A bad row names its line and field, and the earlier output stays as it was.
    let bad = data.join("bad.csv");
    std::fs::write(
        &bad,
        "image,sex,age\ntest/50.png,F,5y\ntest/49.png,Q,5y\ntest/51.png,M,7y14m\n",
    )
    .unwrap();
    let out = visits(&bad, &[]);
    let e = stderr(&out);
    assert!(
        !out.status.success() && e.contains("line 3, field sex") && e.contains("line 4, field age"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("readings.csv"))
            .unwrap()
            .lines()
            .count(),
        2
    );
}
