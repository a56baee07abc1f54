//! Training: overfitting a tiny batch, learning the phantom data and scoring it,
//! checkpoints (save → load, resume equivalence, NaN stop), and the sex model.
mod common;

use std::path::Path;

use bone_age::checkpoint::Checkpoint;
use bone_age::dataset;
use bone_age::evaluate::{evaluate, EvalOptions};
use bone_age::model::ModelConfig;
use bone_age::{Schedule, Target, TrainOptions};
use common::{net, phantom, quiet, serial};
use tch::{Device, Kind, Tensor};

#[test]
fn a_tiny_batch_overfits() {
    let _turn = serial();
    // Overfitting is about the training loss: train-mode BatchNorm (the batch's own
    // statistics) and no dropout, so the loss measured is the one being minimised. The
    // eval-mode loss on 8 random images swings between 0.08 and 0.24 from step to step
    // (its running statistics lag), which made this test depend on the last step's luck.
    // OVERFIT_SEEDS=1,2,3,4 checks the margin over seeds: 0.010, 0.011, 0.049 and 0.015
    // against the bound of 0.1, measured 2026-12-01.
    let seeds: Vec<i64> = std::env::var("OVERFIT_SEEDS").map_or(vec![1], |v| {
        v.split(',').map(|s| s.trim().parse().unwrap()).collect()
    });
    for seed in seeds {
        tch::manual_seed(seed);
        let model = ModelConfig {
            dropout: 0.0,
            ..Default::default()
        };
        let (vs, m) = net([1, 128, 128], model);
        let x = Tensor::randn([8, 1, 128, 128], (Kind::Float, Device::Cpu)); // [N, 1, H, W]
        let y = Tensor::rand([8, 1], (Kind::Float, Device::Cpu)) * 2.0 - 1.0; // [N, 1]
        let mut opt = bone_age::optim::Adam::new(&vs, 1e-3, (0.9, 0.999), 0.0);
        let train_loss = || {
            tch::no_grad(|| {
                f64::try_from(m.forward(&x, None, true).l1_loss(&y, tch::Reduction::Mean)).unwrap()
            })
        };
        let before = train_loss();
        let mut curve = Vec::new(); // every 20 steps
        for step in 0..120 {
            opt.lr = if step < 80 { 1e-3 } else { 1e-4 };
            let loss = m.forward(&x, None, true).l1_loss(&y, tch::Reduction::Mean);
            opt.zero_grad();
            loss.backward();
            opt.step();
            if step % 20 == 19 {
                curve.push(train_loss());
            }
        }
        let after = train_loss();
        assert!(
            after < 0.2 * before && after < 0.1,
            "seed {seed}: L1 {before:.3} → {after:.3} ({curve:.3?})"
        );
        eprintln!("seed {seed}: L1 {before:.3} → {after:.3} ({curve:.3?})");
    }
}

#[test]
fn phantom_training_beats_the_mean_predictor_then_evaluates_and_predicts() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let (data, mut config) = phantom(dir.path(), 500);
    // The optimiser configs/demo.toml had before issue 13 (its bounds were measured on it
    // over seeds): a fast cosine schedule, stabilised by a one-epoch warmup and the head
    // at a tenth of the rate.
    config.train.epochs = 15;
    config.train.lr = 3e-4;
    config.train.schedule = Schedule::Cosine { min_lr: 1e-5 };
    config.train.warmup_epochs = 1.0;
    config.train.head_lr_scale = 0.1;
    let run = dir.path().join("run");
    let summary = bone_age::train(&config, &data, &run, &quiet(), |_| {}).unwrap();

    // Baseline: predict the training mean for every validation image.
    let (train_df, val_df) = config.fold_frames(&data).unwrap();
    let train_ages = dataset::ages(&train_df).unwrap();
    let mean = train_ages.iter().sum::<f64>() / train_ages.len() as f64;
    let val_ages = dataset::ages(&val_df).unwrap();
    let baseline = val_ages.iter().map(|a| (a - mean).abs()).sum::<f64>() / val_ages.len() as f64;
    let best = summary
        .history
        .iter()
        .filter_map(|m| m.val_mae_months)
        .fold(f64::INFINITY, f64::min);
    let history: Vec<_> = summary
        .history
        .iter()
        .map(|m| m.val_mae_months.unwrap())
        .collect();
    // Stable from the first epoch: the training loss (standardised units, under dropout
    // and augmentation) never reaches twice the mean predictor's. Without warmup and the
    // head's rate it was 4.8× in epoch 1.
    let mean_loss = baseline / bone_age::model::AGE_SCALE;
    let losses: Vec<f64> = summary.history.iter().map(|m| m.train_loss).collect();
    assert!(
        losses.iter().all(|&l| l < 2.0 * mean_loss),
        "training losses {losses:.3?} vs the mean predictor's {mean_loss:.3}"
    );
    assert!(
        best < 0.75 * baseline,
        "best val MAE {best:.1} vs mean predictor {baseline:.1}: {history:?}"
    );

    // The run directory holds what the docs promise.
    for f in [
        "config.toml",
        "metrics.csv",
        "best.safetensors",
        "best.json",
        "last.safetensors",
        "last.json",
        "curves.png",
    ] {
        assert!(run.join(f).exists(), "{f}");
    }
    assert_eq!(bone_age::metrics::read_metrics(&run).unwrap().len(), 15);
    assert_eq!(
        image::image_dimensions(run.join("curves.png")).unwrap(),
        (1000, 400)
    );

    // Evaluate the best checkpoint on the validation fold: the same MAE as training saw.
    let ckpt = Checkpoint::load(&summary.best, Device::Cpu).unwrap();
    let eval = evaluate(
        &ckpt,
        &val_df,
        &dir.path().join("cache"),
        &EvalOptions::default(),
    )
    .unwrap();
    assert!(
        (eval.mae_months.unwrap() - best).abs() < 1e-3,
        "{:?} vs {best}",
        eval.mae_months
    );
    assert_eq!(eval.images, val_df.height());
    let tta = evaluate(
        &ckpt,
        &val_df,
        &dir.path().join("cache"),
        &EvalOptions {
            tta: 2,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(tta.mae_months.unwrap() < 0.75 * baseline);

    // Predicting a single file goes through the same preprocessing.
    let path = &dataset::paths(&val_df).unwrap()[0];
    let one = bone_age::predict::predict_file(&ckpt, path, None)
        .unwrap()
        .raw;
    assert!(
        (one - eval.predictions[0].predicted).abs() < 1e-3,
        "{one} vs {}",
        eval.predictions[0].predicted
    );

    // Save → load gives identical predictions.
    let again = Checkpoint::load(&summary.best, Device::Cpu).unwrap();
    let x = Tensor::randn([4, 1, 128, 128], (Kind::Float, Device::Cpu));
    assert!(ckpt
        .model
        .predict(&x, None)
        .equal(&again.model.predict(&x, None)));
}

fn weights(path: &Path) -> Vec<(String, Tensor)> {
    let mut v = Tensor::read_safetensors(path).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn resumed_run_ends_with_the_same_weights() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let (data, mut config) = phantom(dir.path(), 40);
    config.train.epochs = 3;
    config.train.lr = 1e-3;
    // Every stateful ingredient on: AdamW, clipping, the one-cycle schedule, the weight
    // average (restored from ema.safetensors) and the fitted recalibration.
    config.train.optimizer = bone_age::schedule::OptimizerKind::AdamW;
    config.train.weight_decay = 0.05;
    config.train.clip_grad_norm = 1.0;
    config.train.schedule = bone_age::Schedule::WarmupCosine { min_lr: 1e-5 };
    config.train.warmup_epochs = 0.5;
    config.train.ema_decay = 0.9;
    config.train.calibrate = true;
    let full = dir.path().join("full");
    bone_age::train(&config, &data, &full, &quiet(), |_| {}).unwrap();

    let killed = dir.path().join("killed");
    let stop = TrainOptions {
        stop_after_epoch: Some(1),
        ..quiet()
    };
    bone_age::train(&config, &data, &killed, &stop, |_| {}).unwrap();
    assert_eq!(
        bone_age::checkpoint::read_meta(&killed.join("last.safetensors"))
            .unwrap()
            .epoch,
        1
    );
    let err = bone_age::train(&config, &data, &killed, &quiet(), |_| {}).unwrap_err();
    assert!(err.to_string().contains("--resume"), "{err}");
    let resume = TrainOptions {
        resume: true,
        ..quiet()
    };
    let summary = bone_age::train(&config, &data, &killed, &resume, |_| {}).unwrap();
    assert_eq!(
        summary.history.iter().map(|m| m.epoch).collect::<Vec<_>>(),
        [1, 2, 3]
    );

    for file in ["last.safetensors", "ema.safetensors", "best.safetensors"] {
        let (a, b) = (weights(&full.join(file)), weights(&killed.join(file)));
        assert_eq!(a.len(), b.len());
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            assert!(x.equal(y), "{file}: {name} differs after resume");
        }
    }
    // The average is what was validated: best is a copy of an epoch's ema, and the raw
    // weights (last) differ from it.
    let meta = |f: &str| bone_age::checkpoint::read_meta(&full.join(f)).unwrap();
    let (last, ema) = (meta("last.safetensors"), meta("ema.safetensors"));
    let history = summary.history.last().unwrap();
    assert_eq!(ema.metrics.val_mae_months, history.val_mae_months);
    assert_ne!(last.metrics.val_mae_months, ema.metrics.val_mae_months);
    assert!(!weights(&full.join("last.safetensors"))
        .iter()
        .zip(weights(&full.join("ema.safetensors")))
        .all(|((_, x), (_, y))| x.equal(&y)));
    // Each sidecar carries the recalibration fitted to its own weights' predictions on the
    // validation fold (8 of the 40 images), and a resumed run fits the same.
    let (c_last, c_ema) = (last.calibration.unwrap(), ema.calibration.unwrap());
    assert_eq!((c_last.n, c_ema.n), (8, 8));
    assert_ne!(c_last, c_ema);
    let resumed = bone_age::checkpoint::read_meta(&killed.join("ema.safetensors")).unwrap();
    assert_eq!(resumed.calibration, ema.calibration);
}

#[test]
fn a_diverging_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let (data, mut config) = phantom(dir.path(), 40);
    config.train.epochs = 3;
    // Epoch 1 trains normally; from epoch 2 the learning rate is absurd.
    config.train.schedule = Schedule::Step {
        every: 1,
        gamma: 1e30,
    };
    config.train.lr = 1e-4;
    let run = dir.path().join("run");
    let err = bone_age::train(&config, &data, &run, &quiet(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("epoch 2") && (err.contains("NaN") || err.contains("inf")),
        "{err}"
    );
    assert!(err.contains("last.safetensors"), "{err}");
    let meta = bone_age::checkpoint::read_meta(&run.join("last.safetensors")).unwrap();
    assert_eq!(
        meta.epoch, 1,
        "the checkpoint of the last good epoch is intact"
    );
    assert!(weights(&run.join("last.safetensors")).iter().all(|(_, t)| t
        .isfinite()
        .all()
        .int64_value(&[])
        == 1));
}

#[test]
fn the_sex_model_trains_with_bce_and_reports_accuracy() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let (data, mut config) = phantom(dir.path(), 40);
    config.train.epochs = 1;
    config.model.target = Target::Sex;
    let run = dir.path().join("run");
    let summary = bone_age::train(&config, &data, &run, &quiet(), |_| {}).unwrap();
    let m = &summary.history[0];
    assert!(m.val_mae_months.is_none());
    let acc = m.val_accuracy.unwrap();
    assert!((0.0..=1.0).contains(&acc));
    let ckpt = Checkpoint::load(&summary.best, Device::Cpu).unwrap();
    let (_, val) = config.fold_frames(&data).unwrap();
    let eval = evaluate(
        &ckpt,
        &val,
        &dir.path().join("cache"),
        &EvalOptions {
            tta: 0,
            batch_size: 8,
        },
    )
    .unwrap();
    assert!(
        (eval.accuracy.unwrap() - acc).abs() < 1e-9,
        "{:?} vs {acc}",
        eval.accuracy
    );
    assert!(
        eval.predictions
            .iter()
            .all(|p| (0.0..=1.0).contains(&p.predicted)),
        "P(male) in [0, 1]"
    );
}
