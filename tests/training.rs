//! m46 and training: parameter counts, shapes, overfitting a tiny batch, learning the
//! phantom data, checkpoints (save → load, resume equivalence, NaN stop), TensorBoard
//! events read back by Python, and interop with the same net in PyTorch.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bone_age::checkpoint::Checkpoint;
use bone_age::dataset::{self, Dataset, Split};
use bone_age::model::{count_parameters, ModelConfig, M46};
use bone_age::{Config, PhantomSpec, Target, TrainOptions};
use tch::{nn, Device, Kind, Tensor};

/// libtorch's random generator is process-global: tests that train take turns, so
/// one test's dropout masks never depend on another's progress.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn net(input: [i64; 3], config: ModelConfig) -> (nn::VarStore, M46) {
    let vs = nn::VarStore::new(Device::Cpu);
    let m = M46::new(&vs.root(), input, config).unwrap();
    (vs, m)
}

#[test]
fn parameter_counts_match_pytorch() {
    assert_eq!(
        count_parameters(&net([1, 500, 375], ModelConfig::default()).0),
        24_751_201
    );
    assert_eq!(
        count_parameters(&net([1, 128, 128], ModelConfig::default()).0),
        6_663_265
    );
    let sex_in = ModelConfig {
        sex_input: true,
        ..Default::default()
    };
    assert_eq!(
        count_parameters(&net([1, 128, 128], sex_in).0),
        6_663_265 + 2048
    );
    let err = M46::new(
        &nn::VarStore::new(Device::Cpu).root(),
        [1, 100, 128],
        ModelConfig::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("100×128"), "{err}");
}

#[test]
fn output_shapes_and_sex_head() {
    let _turn = serial();
    tch::manual_seed(0);
    let x = Tensor::randn([3, 1, 128, 128], (Kind::Float, Device::Cpu));
    let (_, age) = net([1, 128, 128], ModelConfig::default());
    assert_eq!(age.forward(&x, None, true).size(), [3, 1]);
    assert_eq!(age.predict(&x, None).size(), [3, 1]);
    let (_, sex) = net(
        [1, 128, 128],
        ModelConfig {
            target: Target::Sex,
            sex_input: false,
        },
    );
    let p = sex.predict(&x, None);
    assert!(f64::try_from(p.min()).unwrap() >= 0.0 && f64::try_from(p.max()).unwrap() <= 1.0);
    let (_, with_sex) = net(
        [1, 128, 128],
        ModelConfig {
            sex_input: true,
            ..Default::default()
        },
    );
    let male = Tensor::from_slice(&[1f32, 0., 1.]).view([3, 1]);
    let a = with_sex.predict(&x, Some(&male));
    let b = with_sex.predict(&x, Some(&(1.0 - &male)));
    assert!(
        !a.allclose(&b, 1e-7, 1e-7, false),
        "sex changes the prediction"
    );
}

#[test]
fn a_tiny_batch_overfits() {
    let _turn = serial();
    tch::manual_seed(1);
    let (vs, m) = net([1, 128, 128], ModelConfig::default());
    let x = Tensor::randn([8, 1, 128, 128], (Kind::Float, Device::Cpu));
    let y = Tensor::rand([8, 1], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let mut opt = bone_age::optim::Adam::new(&vs, 1e-3, (0.9, 0.999), 0.0);
    let eval_loss =
        || f64::try_from(m.predict(&x, None).l1_loss(&y, tch::Reduction::Mean)).unwrap();
    let before = eval_loss();
    let mut curve = Vec::new(); // eval-mode L1 every 20 steps
                                // 80 steps at 1e-3, then 40 at 1e-4 so the weights settle: at a constant 1e-3 the
                                // eval-mode loss keeps jumping between 0.10 and 0.24 from one step to the next.
    for step in 0..120 {
        opt.lr = if step < 80 { 1e-3 } else { 1e-4 };
        let loss = m.forward(&x, None, true).l1_loss(&y, tch::Reduction::Mean);
        opt.zero_grad();
        loss.backward();
        opt.step();
        if step % 20 == 19 {
            curve.push(eval_loss());
        }
    }
    let after = eval_loss();
    assert!(
        after < 0.2 * before && after < 0.1,
        "L1 {before:.3} → {after:.3} ({curve:.3?})"
    );
}

/// A phantom dataset at 128×128 (the smallest m46 input) and a config for it.
fn phantom(dir: &Path, n_train: usize) -> (PathBuf, Config) {
    let data = dir.join("data");
    bone_age::phantom::write_dataset(
        &data,
        &PhantomSpec {
            n_train,
            n_test: 40,
            size: [128, 128],
            seed: 7,
        },
    )
    .unwrap();
    let mut c = Config::default();
    for (k, v) in [
        ("runtime.device", "cpu"),
        ("preprocess.whole_image", "true"),
        ("preprocess.scale", "1.0"),
        ("preprocess.margin", "0.1"),
        ("split.n_folds", "5"),
        ("split.test_fold", "5"),
        ("loader.batch_size", "8"),
    ] {
        c.set(k, v).unwrap();
    }
    c.paths.cache_dir = Some(dir.join("cache"));
    (data, c)
}

fn quiet() -> TrainOptions {
    TrainOptions {
        progress: false,
        ..Default::default()
    }
}

#[test]
fn phantom_training_beats_the_mean_predictor_then_evaluates_and_predicts() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let (data, mut config) = phantom(dir.path(), 500);
    // configs/demo.toml's optimiser: a fast cosine schedule, stabilised by a one-epoch
    // warmup and the head at a tenth of the rate.
    config.train.epochs = 15;
    config.train.lr = 3e-4;
    config.train.schedule = "cosine".into();
    config.train.warmup_epochs = 1.0;
    config.train.head_lr_scale = 0.1;
    let run = dir.path().join("run");
    let summary = bone_age::train(&config, &data, &run, &quiet(), |_| {}).unwrap();

    // Baseline: predict the training mean for every validation image.
    let (train_df, val_df) = bone_age::train::split_frames(&config, &data).unwrap();
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
    let mean_loss = baseline / bone_age::loader::AGE_SCALE;
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
    assert_eq!(bone_age::train::read_metrics(&run).unwrap().len(), 15);
    assert_eq!(
        image::image_dimensions(run.join("curves.png")).unwrap(),
        (1000, 400)
    );

    // Evaluate the best checkpoint on the validation fold: the same MAE as training saw.
    let ckpt = Checkpoint::load(&summary.best, Device::Cpu).unwrap();
    let eval =
        bone_age::evaluate::evaluate(&ckpt, &val_df, &dir.path().join("cache"), 0, 32).unwrap();
    assert!(
        (eval.mae_months.unwrap() - best).abs() < 1e-3,
        "{:?} vs {best}",
        eval.mae_months
    );
    assert_eq!(eval.images, val_df.height());
    let tta =
        bone_age::evaluate::evaluate(&ckpt, &val_df, &dir.path().join("cache"), 2, 32).unwrap();
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

    tensorboard_events_read_back(&run, 15);
}

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("BONE_AGE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| bone_age::config::default_cache_dir().join("venv"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} not found: run `make setup` (the test needs the project venv)",
        py.display()
    );
    py
}

fn tensorboard_events_read_back(run: &Path, epochs: usize) {
    let script = format!(
        "from tensorboard.backend.event_processing.event_accumulator import EventAccumulator as E\n\
         a = E({run:?}); a.Reload()\n\
         s = a.Scalars('val/mae_months'); t = a.Scalars('loss/train')\n\
         print(len(s), len(t), s[-1].step)",
        run = run.to_str().unwrap()
    );
    let out = Command::new(venv_python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{epochs} {epochs} {epochs}")
    );
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

    let (a, b) = (
        weights(&full.join("last.safetensors")),
        weights(&killed.join("last.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{name} differs after resume");
    }
}

#[test]
fn a_diverging_loss_stops_training_and_keeps_the_last_good_checkpoint() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let (data, mut config) = phantom(dir.path(), 40);
    config.train.epochs = 3;
    // Epoch 1 trains normally; from epoch 2 the learning rate is absurd.
    config.train.schedule = "step".into();
    config.train.step_every = 1;
    config.train.step_gamma = 1e30;
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
fn pytorch_m46_matches_our_outputs() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    for sex_input in [false, true] {
        tch::manual_seed(3);
        let (mut vs, m) = net(
            [1, 128, 128],
            ModelConfig {
                sex_input,
                ..Default::default()
            },
        );
        // Non-trivial BatchNorm statistics: a few training-mode passes.
        for _ in 0..3 {
            let x = Tensor::randn([6, 1, 128, 128], (Kind::Float, Device::Cpu)) * 2.0 + 0.5;
            let male = Tensor::from_slice(&[1f32, 0., 1., 0., 1., 1.]).view([6, 1]);
            let _ = tch::no_grad(|| m.forward(&x, Some(&male), true));
        }
        vs.freeze();
        let x = Tensor::randn([5, 1, 128, 128], (Kind::Float, Device::Cpu));
        let male = Tensor::from_slice(&[1f32, 0., 0., 1., 1.]).view([5, 1]);
        let out = m.predict(&x, Some(&male));
        vs.save(dir.path().join("weights.safetensors")).unwrap();
        let mut io = vec![("input".to_string(), x), ("output".to_string(), out)];
        if sex_input {
            io.push(("male".to_string(), male));
        }
        Tensor::write_safetensors(&io, dir.path().join("io.safetensors")).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/m46.py");
        let res = Command::new(venv_python())
            .arg(&script)
            .arg("check")
            .arg(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&res.stdout);
        assert!(
            res.status.success(),
            "sex_input={sex_input}: {stdout}{}",
            String::from_utf8_lossy(&res.stderr)
        );
        assert!(stdout.contains("max abs diff"), "{stdout}");
        eprintln!("sex_input={sex_input}: {}", stdout.trim());
    }
}

#[test]
fn recipe_split_of_a_dataset_is_fold_10_of_10() {
    let dir = tempfile::tempdir().unwrap();
    common::recipe_dataset(dir.path(), &common::rows(95), [4, 4]);
    let (_, ds) = Dataset::from_dir(dir.path(), Split::Train, None).unwrap();
    let config = Config::default();
    let (train, val) = bone_age::train::split_frames(&config, dir.path()).unwrap();
    assert_eq!((train.height(), val.height()), (90, 5));
    assert_eq!(
        dataset::ids(&val).unwrap(),
        dataset::ids(&ds.frame).unwrap()[90..]
    );
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
    let (_, val) = bone_age::train::split_frames(&config, &data).unwrap();
    let eval = bone_age::evaluate::evaluate(&ckpt, &val, &dir.path().join("cache"), 0, 8).unwrap();
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
