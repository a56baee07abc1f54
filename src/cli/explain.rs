//! `bone-age explain`: an explanation map of one radiograph (occlusion or Grad-CAM) over
//! the network's input, as a figure, and its grid and top regions as JSON.
use std::path::PathBuf;

use anyhow::Result;
use bone_age::explain::Method;
use bone_age::readout::{Patient, Sex};
use bone_age::{Config, Ensemble};
use clap::Args;

#[derive(Args)]
pub struct ExplainArgs {
    /// The radiograph (PNG, JPEG or DICOM).
    image: PathBuf,
    /// A checkpoint, a run directory, or a K-fold run; repeat for an ensemble (whose map
    /// is the mean of its members').
    #[arg(long, value_name = "FILE|RUN_DIR", required = true)]
    checkpoint: Vec<PathBuf>,
    /// occlusion (the change in the predicted age when a patch is hidden, in months) or
    /// grad-cam (where a convolutional block's gradient-weighted activations raise the
    /// predicted age, relative) [config: explain.method].
    #[arg(long, value_parser = parse_method)]
    method: Option<Method>,
    /// Occlusion patch side in input pixels [config: explain.patch; default: an eighth of
    /// the input's shorter side].
    #[arg(long, value_name = "PX")]
    patch: Option<usize>,
    /// Occlusion stride [config: explain.stride; default: half the patch].
    #[arg(long, value_name = "PX")]
    stride: Option<usize>,
    /// Grad-CAM's block, 1–6 [config: explain.layer; default: the last block whose
    /// activation is at least 10 cells across: 6, the last, at 500×375; 4 at 128×128].
    #[arg(long, value_name = "BLOCK")]
    layer: Option<usize>,
    /// The patient's sex, for models trained with sex as an input (DICOM: PatientSex).
    #[arg(long, value_parser = super::predict::parse_sex)]
    sex: Option<Sex>,
    /// The figure, .png [default: <image stem>-<method>.png].
    #[arg(long, value_name = "FILE.png")]
    out: Option<PathBuf>,
    /// Print the map's grid (one value per window or cell, with its box in input pixels)
    /// and its top regions as one JSON object.
    #[arg(long)]
    json: bool,
}

fn parse_method(s: &str) -> Result<Method, String> {
    s.parse().map_err(|e: bone_age::Error| e.to_string())
}

pub fn run(args: ExplainArgs, config: &Config) -> Result<()> {
    let mut cfg = config.explain.clone();
    cfg.method = args.method.unwrap_or(cfg.method);
    cfg.patch = args.patch.or(cfg.patch);
    cfg.stride = args.stride.or(cfg.stride);
    cfg.layer = args.layer.or(cfg.layer);
    cfg.validate()?;
    let device = bone_age::runtime::init(&config.runtime)?;
    let ensemble = Ensemble::load(&args.checkpoint, device)?;
    let views = ensemble.load_radiograph(&args.image)?;
    let dicom = views.primary().dicom.as_ref().map(|d| &d.meta);
    let sex = Patient::resolve(args.sex, None, dicom).sex;
    let e = ensemble.explain(&views, sex.map(Sex::is_male), &cfg)?;
    let out = args.out.unwrap_or_else(|| {
        let stem = args
            .image
            .file_stem()
            .map_or("radiograph".into(), |s| s.to_string_lossy().into_owned());
        let method = match cfg.method {
            Method::Occlusion => "occlusion",
            Method::GradCam => "grad-cam",
        };
        PathBuf::from(format!("{stem}-{method}.png"))
    });
    let figure = bone_age::plot::ExplanationOverlay::new(e.clone());
    bone_age::plot::save(&figure, &out, None)?;
    if args.json {
        let mut v = serde_json::to_value(&e)?;
        v["figure"] = serde_json::json!(out);
        println!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    println!("{}", figure.title);
    println!(
        "top regions (input pixels [top, left, height, width], {}):",
        e.unit
    );
    for r in &e.top {
        println!("  {:?}  {:+.3}", r.rect, r.value);
    }
    println!("figure            {}", out.display());
    for w in &views.primary().warnings {
        eprintln!("warning: {}: {w}", args.image.display());
    }
    Ok(())
}
