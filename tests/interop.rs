//! Interop with the Python tools our users check us against: the same m46 in PyTorch
//! (`scripts/m46.py`) gives our outputs from our weights, and TensorBoard reads the
//! event file of a training run. Both use the project venv (`make setup`).
mod common;

use std::path::Path;
use std::process::Command;

use bone_age::model::ModelConfig;
use common::{net, phantom, quiet, serial, venv_python};
use tch::{Device, Kind, Tensor};

/// Runs `scripts/m46.py MODE DIR`, which exits 0 only when PyTorch agrees with us, and
/// returns the line it printed (which must start with `expect`).
fn m46_py(mode: &str, dir: &Path, expect: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/m46.py");
    let res = Command::new(venv_python())
        .arg(&script)
        .arg(mode)
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout).trim().to_string();
    assert!(
        res.status.success(),
        "m46.py {mode}: {stdout}{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(stdout.starts_with(expect), "{stdout}");
    stdout
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
        let stdout = m46_py("check", dir.path(), "interop: max abs diff");
        eprintln!("sex_input={sex_input}: {stdout}");
    }
}

/// Ten training steps from the same weights over the same three batches (train mode,
/// dropout off) with `optimizer`, then every weight and BatchNorm running statistic
/// against torch.optim's on the same net (`scripts/m46.py steps`).
fn training_steps_match_torch(tc: bone_age::TrainConfig) {
    let _turn = serial();
    // One thread, as the Python side: the same summation order (see m46.py `steps`).
    tch::set_num_threads(1);
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(5);
    let model = ModelConfig {
        dropout: 0.0,
        ..Default::default()
    };
    let (vs, m) = net([1, 128, 128], model);
    let all = || -> Vec<(String, Tensor)> {
        let mut v: Vec<_> = vs
            .variables()
            .into_iter()
            .map(|(k, t)| (k, t.detach().copy()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    Tensor::write_safetensors(&all(), dir.path().join("before.safetensors")).unwrap();
    let mut batches = Vec::new();
    for k in 0..3 {
        let x = Tensor::randn([8, 1, 128, 128], (Kind::Float, Device::Cpu)); // [N, 1, H, W]
        let y = Tensor::randn([8, 1], (Kind::Float, Device::Cpu)) * 0.3; // [N, 1]
        batches.push((format!("x{k}"), x));
        batches.push((format!("y{k}"), y));
    }
    Tensor::write_safetensors(&batches, dir.path().join("batches.safetensors")).unwrap();
    let mut opt = bone_age::optim::Adam::from_config(&vs, &tc);
    let steps = 10;
    for k in 0..steps {
        let (x, y) = (&batches[2 * (k % 3)].1, &batches[2 * (k % 3) + 1].1);
        let loss = bone_age::epoch::loss_fn(bone_age::Target::Age, &m.forward(x, None, true), y);
        opt.zero_grad();
        loss.backward();
        if tc.clip_grad_norm > 0.0 {
            opt.clip_grad_norm(tc.clip_grad_norm);
        }
        opt.step();
    }
    Tensor::write_safetensors(&all(), dir.path().join("after.safetensors")).unwrap();
    let spec = serde_json::json!({
        "optimizer": serde_json::to_value(tc.optimizer).unwrap(),
        "lr": tc.lr,
        "betas": tc.betas,
        "weight_decay": tc.weight_decay,
        "clip_grad_norm": tc.clip_grad_norm,
        "steps": steps,
    });
    std::fs::write(dir.path().join("steps.json"), spec.to_string()).unwrap();
    eprintln!("{}", m46_py("steps", dir.path(), "steps:"));
}

#[test]
fn ten_recipe_adam_steps_match_torch_optim_adam() {
    // The recipe's Adam: lr 2e-5, betas (0.5, 0.999), no weight decay.
    training_steps_match_torch(bone_age::TrainConfig::default());
}

#[test]
fn ten_adamw_steps_with_clipping_match_torch_optim_adamw() {
    // configs/rsna-128.toml's optimiser: AdamW with decoupled decay, gradient clipping.
    training_steps_match_torch(bone_age::TrainConfig {
        optimizer: bone_age::schedule::OptimizerKind::AdamW,
        lr: 1e-3,
        betas: [0.9, 0.999],
        weight_decay: 0.05,
        clip_grad_norm: 1.0,
        ..Default::default()
    });
}

#[test]
fn the_training_benchmark_times_both_sides() {
    let out = common::bone_age(&[
        "--threads",
        "1",
        "bench",
        "train",
        "--steps",
        "1",
        "--rounds",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let r: serde_json::Value = serde_json::from_str(&common::stdout(&out)).unwrap();
    for side in ["ours", "peer"] {
        let f = &r[side];
        assert!(f["train_img_s"].as_f64().unwrap() > 0.0, "{side}: {r}");
        assert!(f["eval_img_s"].as_f64().unwrap() > 0.0, "{side}: {r}");
        for phase in ["forward_ms", "backward_ms", "optimizer_ms"] {
            assert!(
                f["breakdown"][phase].as_f64().unwrap() > 0.0,
                "{side} {phase}: {r}"
            );
        }
    }
    assert!(r["ratio_train"].as_f64().unwrap().is_finite());
    assert_eq!(r["threads"], 1);
}

#[test]
fn tensorboard_reads_the_event_file_of_a_training_run() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let (data, mut config) = phantom(dir.path(), 40);
    config.train.epochs = 2;
    let run = dir.path().join("run");
    bone_age::train(&config, &data, &run, &quiet(), |_| {}).unwrap();
    tensorboard_events_read_back(&run, 2);
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
