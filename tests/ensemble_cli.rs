//! K-fold ensembles and explanation maps on the command line: folds trained one at a time
//! as independent jobs (the last to finish calibrates), bad fold numbers, members that do
//! not match, an ensemble read by evaluate, predict, the report and explain, and
//! explain's own errors.
mod common;

use std::process::Output;

use common::{bone_age, stderr, stdout};

fn ok(o: &Output) {
    assert!(o.status.success(), "{}\n{}", stdout(o), stderr(o));
}

fn fails_with(o: &Output, needles: &[&str]) {
    let e = stderr(o);
    assert!(!o.status.success(), "succeeded: {}", stdout(o));
    for n in needles {
        assert!(e.contains(n), "{n:?} not in: {e}");
    }
}

#[test]
fn folds_as_jobs_then_the_ensemble_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    common::phantom_cli(&data, 48, 8);
    let cache = format!("paths.cache_dir={}", dir.path().join("cache").display());
    let mut flags = vec!["--device", "cpu", "--set", &cache];
    flags.extend(common::WHOLE_IMAGE);
    let run = dir.path().join("ens");
    let r = run.to_str().unwrap();
    let train_for = |epochs: &str, extra: &[&str]| {
        let mut args = vec!["train", "--data-dir", d, "--out", r, "--batch-size", "8"];
        args.extend(["--epochs", epochs]);
        args.extend(&flags);
        args.extend(extra);
        bone_age(&args)
    };
    let train = |extra: &[&str]| train_for("1", extra);
    // Bad fold numbers name the values.
    fails_with(
        &train(&["--folds", "2", "--fold", "3"]),
        &["--fold 3", "1..2"],
    );
    fails_with(&train(&["--folds", "1"]), &["at least 2 folds"]);
    assert!(!run.join("fold-3").exists());

    // Fold 1 alone, as one job of an array: nothing to calibrate yet.
    let one = train(&["--folds", "2", "--fold", "1"]);
    ok(&one);
    assert!(
        stdout(&one).contains("1 of 2 folds have finished")
            && stdout(&one).contains("ensemble calibrate"),
        "{}",
        stdout(&one)
    );
    let early = bone_age(&["ensemble", "calibrate", r, "--data-dir", d, "--set", &cache]);
    fails_with(&early, &["1 fold directory"]);
    let config: toml::Table = std::fs::read_to_string(run.join("fold-1/config.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(config["folds"]["val_fold"].as_integer(), Some(1));
    assert_eq!(config["folds"]["n_folds"].as_integer(), Some(2));
    // Fold 2 is killed after its first of two epochs: the ensemble is not calibrated
    // from a fold that has not finished.
    ok(&train_for(
        "2",
        &["--folds", "2", "--fold", "2", "--stop-after-epoch", "1"],
    ));
    let early = bone_age(&["ensemble", "calibrate", r, "--data-dir", d, "--set", &cache]);
    fails_with(
        &early,
        &["fold-2 has not finished its 2 epochs", "--resume"],
    );
    // Resumed, it finishes last and calibrates the ensemble on the out-of-fold predictions.
    let two = train_for("2", &["--folds", "2", "--fold", "2", "--resume"]);
    ok(&two);
    let text = stdout(&two);
    assert!(
        text.contains("out-of-fold       48 images") && text.contains("16–19 y"),
        "{text}"
    );
    assert!(run.join("ensemble.json").is_file() && run.join("oof.csv").is_file());
    let shown = bone_age(&["ensemble", "show", r, "--json"]);
    ok(&shown);
    let summary: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(summary["oof_images"], 48);
    assert!(
        summary.get("residuals").is_none(),
        "the summary leaves the residuals out"
    );
    // Training again without --resume refuses the finished run; with it, skips it.
    fails_with(&train(&["--folds", "2"]), &["--resume"]);

    // evaluate: no validation fold of its own; the test split with every member.
    let mut eval = vec![
        "evaluate",
        "--checkpoint",
        r,
        "--data-dir",
        d,
        "--validation",
    ];
    eval.extend(["--set", &cache]);
    fails_with(&bone_age(&eval), &["no held-out fold of its own"]);
    let out_dir = dir.path().join("eval");
    let o = out_dir.to_str().unwrap();
    let args = [
        "evaluate",
        "--checkpoint",
        r,
        "--data-dir",
        d,
        "--split",
        "test",
        "--json",
        "--out",
        o,
        "--set",
        &cache,
    ];
    let out = bone_age(&args);
    ok(&out);
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["members"].as_array().unwrap().len(), 2);
    assert_eq!(m["coverage"]["images"], 8);
    assert!(
        m["interval_source"].as_str().unwrap().starts_with("CV+"),
        "{m}"
    );
    let csv = std::fs::read_to_string(out_dir.join("predictions.csv")).unwrap();
    assert!(
        csv.starts_with(
            "id,male,boneage,predicted,abs_error,low,high,covered,spread,fold-1,fold-2"
        ),
        "{csv}"
    );

    // predict: the mean, each member, the spread and the CV+ interval.
    let img = data.join("test/49.png");
    let i = img.to_str().unwrap();
    let out = bone_age(&["predict", i, "--checkpoint", r, "--json", "--tta", "2"]);
    ok(&out);
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members = p["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    let mean =
        (members[0]["value"].as_f64().unwrap() + members[1]["value"].as_f64().unwrap()) / 2.0;
    assert!((mean - p["raw"].as_f64().unwrap()).abs() < 1e-9, "{p}");
    assert!(
        p["spread"].as_f64().is_some() && p["tta_spread"].as_f64().is_some(),
        "{p}"
    );
    let [lo, hi] = [&p["interval"][0], &p["interval"][1]].map(|v| v.as_f64().unwrap());
    assert!(
        lo <= p["value"].as_f64().unwrap() && p["value"].as_f64().unwrap() <= hi,
        "{p}"
    );

    // The report of an ensemble reading carries its members and the explanation map.
    let report = dir.path().join("r.html");
    let out = bone_age(&[
        "predict",
        i,
        "--checkpoint",
        r,
        "--sex",
        "M",
        "--age",
        "10y",
        "--report",
        report.to_str().unwrap(),
    ]);
    ok(&out);
    assert!(
        stdout(&out).contains("Ensemble members      fold-1"),
        "{}",
        stdout(&out)
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert_eq!(html.matches("data:image/png;base64,").count(), 3);
    assert!(
        html.contains("where the reading comes from") && html.contains("an ensemble of 2 models")
    );

    // Members must match: a sex model beside an age model names both.
    let sex_run = dir.path().join("sex");
    let mut args = common::one_epoch(d, sex_run.to_str().unwrap());
    args.extend(&flags);
    args.extend(["--model-type", "sex"]);
    ok(&bone_age(&args));
    let fold1 = run.join("fold-1");
    let out = bone_age(&[
        "predict",
        i,
        "--checkpoint",
        fold1.to_str().unwrap(),
        "--checkpoint",
        sex_run.to_str().unwrap(),
    ]);
    fails_with(
        &out,
        &[
            "members differ",
            "fold-1",
            "sex/",
            "predicts bone age",
            "predicts sex",
        ],
    );

    // explain: a figure and, with --json, the grid and the top regions.
    let fig = dir.path().join("map.png");
    let out = bone_age(&[
        "explain",
        i,
        "--checkpoint",
        r,
        "--json",
        "--out",
        fig.to_str().unwrap(),
    ]);
    ok(&out);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            e["method"].as_str(),
            e["unit"].as_str(),
            e["members"].as_u64()
        ),
        (Some("occlusion"), Some("months"), Some(2))
    );
    let (rows, cols) = (
        e["grid"]["rows"].as_u64().unwrap(),
        e["grid"]["cols"].as_u64().unwrap(),
    );
    assert_eq!((rows, cols), (15, 15), "128 px, patch 16, stride 8");
    assert_eq!(e["grid"]["values"].as_array().unwrap().len(), 225);
    assert_eq!(e["top"].as_array().unwrap().len(), 5);
    let (w, h) = image::image_dimensions(&fig).unwrap();
    assert!(w > 400 && h > 300, "{w}×{h}");
    let cam = bone_age(&[
        "explain",
        i,
        "--checkpoint",
        fold1.to_str().unwrap(),
        "--method",
        "grad-cam",
        "--layer",
        "5",
        "--json",
        "--out",
        fig.to_str().unwrap(),
    ]);
    ok(&cam);
    let e: serde_json::Value = serde_json::from_slice(&cam.stdout).unwrap();
    assert_eq!(
        (e["grid"]["rows"].as_u64(), e["unit"].as_str()),
        (Some(7), Some("relative"))
    );
    let peak = e["grid"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap().abs())
        .fold(0.0, f64::max);
    assert!((peak - 1.0).abs() < 1e-9 || peak == 0.0, "{peak}");
    fails_with(
        &bone_age(&[
            "explain",
            i,
            "--checkpoint",
            r,
            "--patch",
            "200",
            "--out",
            fig.to_str().unwrap(),
        ]),
        &["200×200", "128×128"],
    );
    fails_with(
        &bone_age(&[
            "explain",
            i,
            "--checkpoint",
            r,
            "--method",
            "grad-cam",
            "--layer",
            "7",
        ]),
        &["block 7"],
    );
}
