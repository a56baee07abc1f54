//! `bone-age bench train`: the m46 training step timed phase by phase (batch preparation,
//! forward, backward, optimiser) and inference, against the same net and step in PyTorch
//! (`scripts/bench_train_peer.py`, which builds `scripts/m46.py`) in the same run, with
//! the same threads, batch, Adam settings and, on CUDA, the same autocast and memory format. The data are synthetic images in a u8 cache
//! with the recipe's margin, batched by the training loader (augmentation off), so batch
//! preparation is what training does; the peer gets ready float batches.
use std::path::Path;
use std::time::Instant;

use polars::prelude::*;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use super::step_report::median;
use crate::cache::{CacheSource, ImageCache};
use crate::epoch::forward_loss;
use crate::error::{Error, Result};
use crate::loader::{BatchLoader, LoaderConfig};
use crate::model::{ModelConfig, Target, M46};
use crate::optim::Adam;
use crate::preprocess::Geometry;
use crate::runtime;
use crate::schedule::TrainConfig;

/// What to time.
#[derive(Clone, Debug)]
pub struct StepOptions {
    /// The network's input [C, H, W].
    pub input: [i64; 3],
    pub batch: usize,
    /// Timed training steps (after `warmup` untimed ones).
    pub steps: usize,
    pub warmup: usize,
    /// libtorch intra-op threads, for us and the peer (0: libtorch's default).
    pub threads: usize,
    pub seed: u64,
    /// Ours and the peer's are timed alternately this many times; the medians are reported,
    /// so a machine whose speed drifts (a shared VM) favours neither side.
    pub rounds: usize,
    /// The CPU, or a CUDA device (then each phase is timed to a synchronisation).
    pub device: Device,
    /// CUDA only, as `[train]`: bf16 autocast, channels-last, cuDNN autotuning.
    pub autocast: bool,
    pub channels_last: bool,
    pub cudnn_benchmark: bool,
}

/// Mean milliseconds per training step, by phase.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Breakdown {
    pub prepare_ms: f64,
    pub forward_ms: f64,
    pub backward_ms: f64,
    pub optimizer_ms: f64,
}

impl Breakdown {
    pub fn total_ms(&self) -> f64 {
        self.prepare_ms + self.forward_ms + self.backward_ms + self.optimizer_ms
    }
}

/// One side's figures: training and inference images/s and the step's breakdown.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepFigures {
    pub train_img_s: f64,
    pub eval_img_s: f64,
    pub breakdown: Breakdown,
    pub versions: String,
}

/// Ours, the peer's, and the ratios.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub input: [i64; 3],
    pub batch: usize,
    pub steps: usize,
    pub threads: i32,
    /// `cpu`, or `cuda:N` with the switches in force (autocast, channels-last).
    pub device: String,
    pub rounds: usize,
    /// Medians over the rounds.
    pub ours: StepFigures,
    pub peer: Option<StepFigures>,
    /// ours / peer training images/s (target ≥ 1).
    pub ratio_train: Option<f64>,
    /// ours / peer inference images/s (target ≥ 1).
    pub ratio_eval: Option<f64>,
}

/// Times our step, then the peer's (`peer`: the Python interpreter and the script).
pub fn train_step(options: &StepOptions, peer: Option<(&Path, &Path)>) -> Result<StepReport> {
    if options.batch == 0 || options.steps == 0 {
        return Err(Error::Invalid {
            what: "bench train".into(),
            message: "--batch and --steps must be >= 1".into(),
        });
    }
    if options.threads > 0 {
        tch::set_num_threads(options.threads as i32);
    }
    let threads = tch::get_num_threads();
    let [c, h, w] = options.input;
    let mut args = vec![
        format!("--input-shape={c},{h},{w}"),
        format!("--batch={}", options.batch),
        format!("--steps={}", options.steps),
        format!("--warmup={}", options.warmup),
        format!("--threads={threads}"),
    ];
    if options.device.is_cuda() {
        args.push(format!(
            "--device={}",
            crate::runtime::device_name(options.device)
        ));
        for (on, flag) in [
            (options.autocast, "--autocast"),
            (options.channels_last, "--channels-last"),
            (options.cudnn_benchmark, "--cudnn-benchmark"),
        ] {
            if on {
                args.push(flag.into());
            }
        }
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..options.rounds.max(1) {
        ours.push(time_ours(options)?);
        if let Some((python, script)) = peer {
            theirs.push(super::run_script::<StepFigures>(python, script, &args)?);
        }
    }
    let ours = median(ours);
    let peer = (!theirs.is_empty()).then(|| median(theirs));
    Ok(StepReport {
        input: options.input,
        batch: options.batch,
        steps: options.steps,
        threads,
        device: describe(options),
        rounds: options.rounds.max(1),
        ratio_train: peer.as_ref().map(|p| ours.train_img_s / p.train_img_s),
        ratio_eval: peer.as_ref().map(|p| ours.eval_img_s / p.eval_img_s),
        ours,
        peer,
    })
}

fn describe(options: &StepOptions) -> String {
    let name = runtime::device_name(options.device);
    if !options.device.is_cuda() {
        return name;
    }
    let on = |b: bool| if b { "on" } else { "off" };
    format!(
        "{name} (autocast bf16 {}, channels-last {}, cuDNN benchmark {})",
        on(options.autocast),
        on(options.channels_last),
        on(options.cudnn_benchmark)
    )
}

/// A loader over `n` synthetic u8 images with the recipe's 10% margin around `out`.
fn synthetic_loader(
    out: [usize; 2],
    n: usize,
    batch: usize,
    seed: u64,
    device: Device,
) -> Result<BatchLoader> {
    let margin = |o: usize| o + 2 * (o as f64 * 0.1).round() as usize;
    let cached = [margin(out[0]), margin(out[1])];
    tch::manual_seed(seed as i64);
    let images = Tensor::randint(
        256,
        [n as i64, 1, cached[0] as i64, cached[1] as i64],
        (Kind::Uint8, Device::Cpu),
    );
    let ids: Vec<i64> = (1..=n as i64).collect();
    let frame = df!(
        "id" => ids.clone(),
        "boneage" => ids.iter().map(|i| (i * 37 % 228) as f64).collect::<Vec<_>>(),
        "male" => ids.iter().map(|i| i % 2 == 0).collect::<Vec<_>>(),
        "path" => ids.iter().map(|i| format!("{i}.png")).collect::<Vec<_>>(),
    )
    .map_err(|e| Error::Frame(e.to_string()))?;
    let cache = ImageCache {
        images,
        ids,
        geometry: Geometry { out, cached },
        path: "synthetic".into(),
        source: CacheSource::Built,
        skipped: Vec::new(),
    };
    let config = LoaderConfig {
        batch_size: batch,
        drop_last: true,
        ..Default::default()
    };
    BatchLoader::new(&cache, &frame, Target::Age, config, None, device, seed)
}

fn time_ours(options: &StepOptions) -> Result<StepFigures> {
    let [_, h, w] = options.input;
    let device = options.device;
    let n = options.batch * (options.steps + options.warmup).max(1);
    let loader = synthetic_loader(
        [h as usize, w as usize],
        n,
        options.batch,
        options.seed,
        device,
    )?;
    let mut vs = nn::VarStore::new(device);
    let model = M46::new(&vs.root(), options.input, ModelConfig::default())?;
    let tc = TrainConfig::default();
    let mut opt = Adam::new(&vs, tc.lr, (tc.betas[0], tc.betas[1]), tc.weight_decay);
    let autocast = options.autocast && device.is_cuda();
    runtime::cuda_setup(
        &mut vs,
        options.cudnn_benchmark,
        options.channels_last,
        autocast,
    );
    // On CUDA a phase ends when the device has finished it.
    let now = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        Instant::now()
    };
    let mut sum = Breakdown::default();
    let mut batches = loader.epoch(1);
    for step in 0..options.warmup + options.steps {
        let t0 = now();
        let batch = batches.next().ok_or_else(|| Error::Invalid {
            what: "bench train".into(),
            message: "ran out of batches".into(),
        })?;
        let t1 = now();
        let loss = forward_loss(&model, &batch, Target::Age, options.channels_last, autocast);
        let _ = f64::try_from(&loss)?;
        let t2 = now();
        opt.zero_grad();
        loss.backward();
        let t3 = now();
        opt.step();
        let t4 = now();
        if step >= options.warmup {
            let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e3;
            sum.prepare_ms += ms(t0, t1);
            sum.forward_ms += ms(t1, t2);
            sum.backward_ms += ms(t2, t3);
            sum.optimizer_ms += ms(t3, t4);
        }
    }
    let k = options.steps as f64;
    let breakdown = Breakdown {
        prepare_ms: sum.prepare_ms / k,
        forward_ms: sum.forward_ms / k,
        backward_ms: sum.backward_ms / k,
        optimizer_ms: sum.optimizer_ms / k,
    };
    let train_img_s = options.batch as f64 / (breakdown.total_ms() / 1e3);
    // Inference: eval mode, no gradients, the same batches.
    let eval_start = now();
    let mut seen = 0;
    tch::no_grad(|| {
        for batch in loader.epoch(0).take(options.steps) {
            let _ = tch::autocast(autocast, || {
                model.forward(&batch.images, Some(&batch.male), false)
            });
            seen += batch.ids.len();
        }
    });
    let eval_img_s = seen as f64 / (now() - eval_start).as_secs_f64();
    Ok(StepFigures {
        train_img_s,
        eval_img_s,
        breakdown,
        versions: format!(
            "bone-age {}, tch {}",
            env!("CARGO_PKG_VERSION"),
            crate::runtime::TCH_VERSION
        ),
    })
}
