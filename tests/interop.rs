//! Interop with the Python tools our users check us against: the same m46 in PyTorch
//! (`scripts/m46.py`) gives our outputs from our weights, and TensorBoard reads the
//! event file of a training run. Both use the project venv (`make setup`).
mod common;

use std::path::Path;
use std::process::Command;

use bone_age::model::ModelConfig;
use common::{net, phantom, quiet, serial, venv_python};
use tch::{Device, Kind, Tensor};

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
