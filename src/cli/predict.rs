//! `bone-age predict`: single radiographs (the bone age, or with a sex and an age the
//! clinical reading, optionally as an HTML report with an explanation map), or a visits
//! CSV in batch; with one checkpoint or an ensemble.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use bone_age::explain::Method;
use bone_age::preprocess::HandCrop;
use bone_age::readout::{read_visits, Centring, ChronologicalAge, Patient, Readout, Sex};
use bone_age::report::{ModelInfo, Report, ReportVisit, VisitOptions};
use bone_age::{Config, Ensemble};
use clap::Args;

#[derive(Args)]
pub struct PredictArgs {
    /// Image files (PNG, JPEG or DICOM, recognised by content); or give --visits. A DICOM
    /// file's PatientSex, PatientBirthDate and StudyDate give the sex and age unless
    /// --sex/--age/--birth say otherwise (which then win, with a warning).
    #[arg(required_unless_present = "visits", conflicts_with = "visits")]
    images: Vec<PathBuf>,
    /// A `*.safetensors` checkpoint with its `.json` sidecar, or a run directory: then its
    /// weight average (ema), else best, else last. A K-fold run (`train --folds K`), or the
    /// flag repeated, reads with an ensemble: the members' mean, each member's value and
    /// their spread, and (for a calibrated K-fold run) the CV+ 95% interval.
    #[arg(long, value_name = "FILE|RUN_DIR", required = true)]
    checkpoint: Vec<PathBuf>,
    /// Average this many augmented passes with the plain one; their spread widens the
    /// interval.
    #[arg(long, default_value_t = 0)]
    tta: usize,
    /// The explanation map in --report: occlusion, grad-cam or none [default: the config's
    /// explain.method, occlusion].
    #[arg(long, value_enum)]
    explain: Option<MapChoice>,
    /// The patient's sex, M or F: needed for a clinical reading, and by models trained
    /// with sex as an input (DICOM: from PatientSex when not given).
    #[arg(long, value_parser = parse_sex)]
    sex: Option<Sex>,
    /// Chronological age at the exam, for the clinical reading (needs --sex): months (86
    /// or 86m), years (7y) or years and months (7y2m). DICOM: from the dates when not given.
    #[arg(long, conflicts_with_all = ["birth", "exam"])]
    age: Option<String>,
    /// Birth date (YYYY-MM-DD), with --exam, instead of --age.
    #[arg(long, value_name = "YYYY-MM-DD", requires = "exam")]
    birth: Option<String>,
    /// Exam date (YYYY-MM-DD), with --birth.
    #[arg(long, value_name = "YYYY-MM-DD", requires = "birth")]
    exam: Option<String>,
    /// Batch visits: a CSV of image,sex,age or image,sex,birth_date,exam_date, with an
    /// optional patient column (images relative to the CSV). Writes OUT/readings.csv,
    /// OUT/charts/PATIENT.png and OUT/summary.json; a re-run replaces OUT whole. Missing
    /// or unreadable images are reported, skipped and counted.
    #[arg(long, value_name = "CSV", requires = "out")]
    visits: Option<PathBuf>,
    /// The output directory of --visits.
    #[arg(long, value_name = "DIR", requires = "visits")]
    out: Option<PathBuf>,
    /// A self-contained, printable HTML report: FILE.html for one image with an age; with
    /// --visits, give no value: one per patient in OUT/reports.
    #[arg(long, value_name = "FILE.html", num_args = 0..=1)]
    report: Option<Option<PathBuf>>,
    /// What the Z-score is centred on: chronological (BA − CA) or brush-mean (BA − the
    /// reference mean at CA) [default: readout.centring, chronological].
    #[arg(long, value_parser = parse_centring)]
    centring: Option<Centring>,
    /// |Z| up to this is normal [default: readout.normal_sd, 2].
    #[arg(long, value_name = "SD")]
    normal_sd: Option<f64>,
    /// Print JSON: one object per image (the reading, or path, value, raw, calibrated,
    /// clamped, warnings; or error), or the --visits summary.
    #[arg(long)]
    json: bool,
    /// Report the network's own output, without the linear recalibration the checkpoint's
    /// sidecar carries (runs trained with `train.calibrate`).
    #[arg(long)]
    no_calibration: bool,
    /// Crop to the hand found in the image: off, dicom (DICOM input only) or on (every
    /// image) [default: the checkpoint's preprocess.hand.crop, dicom].
    #[arg(long, value_parser = parse_hand_crop)]
    hand_crop: Option<HandCrop>,
}

fn parse_hand_crop(s: &str) -> Result<HandCrop, String> {
    match s {
        "off" => Ok(HandCrop::Off),
        "dicom" => Ok(HandCrop::Dicom),
        "on" => Ok(HandCrop::On),
        _ => Err(format!("{s:?}: expected off, dicom or on")),
    }
}

pub fn parse_sex(s: &str) -> Result<Sex, String> {
    Sex::parse(s).map_err(|e| e.to_string())
}

/// The report's explanation map.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum MapChoice {
    Occlusion,
    GradCam,
    None,
}

fn parse_centring(s: &str) -> Result<Centring, String> {
    match s.to_ascii_lowercase().replace('_', "-").as_str() {
        "chronological" => Ok(Centring::Chronological),
        "brush-mean" => Ok(Centring::BrushMean),
        _ => Err(format!("{s:?}: expected chronological or brush-mean")),
    }
}

/// Predicts every image (one that fails is reported and the rest still run), or the visits.
pub fn predict(args: PredictArgs, config: &Config) -> Result<ExitCode> {
    let mut readout = config.readout.clone();
    readout.centring = args.centring.unwrap_or(readout.centring);
    readout.normal_sd = args.normal_sd.unwrap_or(readout.normal_sd);
    readout.validate()?;
    let device = bone_age::runtime::init(&config.runtime)?;
    let mut model = Ensemble::load(&args.checkpoint, device)?;
    if args.no_calibration {
        model.without_calibration();
    }
    if let Some(mode) = args.hand_crop {
        model.for_each_config(|c| c.preprocess.hand.crop = mode);
    }
    let with = |method| {
        Some(bone_age::explain::ExplainConfig {
            method,
            ..config.explain.clone()
        })
    };
    let explain = match args.explain {
        Some(MapChoice::None) => None,
        Some(MapChoice::Occlusion) => with(Method::Occlusion),
        Some(MapChoice::GradCam) => with(Method::GradCam),
        None => Some(config.explain.clone()),
    };
    if let Some(csv) = &args.visits {
        let out = args.out.as_ref().context("--visits needs --out")?;
        if let Some(Some(f)) = &args.report {
            bail!("--report {}: with --visits the reports go to {}/reports; give --report without a file", f.display(), out.display());
        }
        let visits = read_visits(csv)?;
        let bar = bone_age::progress::bar(visits.len() as u64, "visits");
        let options = VisitOptions {
            reports: args.report.is_some(),
            explain: explain.clone(),
            tta: args.tta,
        };
        let summary =
            bone_age::report::run_visits(&model, &visits, out, &readout, &options, |o| {
                if let Some(e) = &o.error {
                    bar.suspend(|| {
                        eprintln!("warning: line {}: {} skipped: {e}", o.line, o.status)
                    });
                }
                bar.inc(1);
            })?;
        bar.finish_and_clear();
        if args.json {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            println!(
                "read {} of {} visits ({} missing, {} failed) for {} patient(s) → {}",
                summary.read,
                summary.visits,
                summary.missing,
                summary.failed,
                summary.patients,
                out.display()
            );
        }
        return Ok(if summary.read == 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    let age = match (&args.age, &args.birth, &args.exam) {
        (Some(a), _, _) => Some(ChronologicalAge::parse(a)?),
        (None, Some(b), Some(e)) => Some(ChronologicalAge::from_date_strings(b, e)?),
        _ => None,
    };
    let report = match &args.report {
        None => None,
        Some(None) => bail!("--report needs a file name (FILE.html) for single images"),
        Some(Some(_))
            if age.is_none()
                && !args
                    .images
                    .iter()
                    .any(|p| bone_age::preprocess::dicom::is_dicom(p)) =>
        {
            bail!("--report needs a clinical reading: give --sex and --age (or --birth and --exam)")
        }
        Some(Some(_)) if args.images.len() != 1 => {
            bail!("--report writes one image's report: give one image, or use --visits")
        }
        Some(Some(f)) => Some(f.clone()),
    };
    let mut failed = 0;
    for path in &args.images {
        let result = (|| -> bone_age::Result<()> {
            let views = model.load_radiograph(path)?;
            let radiograph = views.primary();
            let patient =
                Patient::resolve(args.sex, age, radiograph.dicom.as_ref().map(|d| &d.meta));
            let male = patient.sex.map(Sex::is_male);
            let reading = model.read(&views, male, args.tta)?;
            if patient.age.is_some() && patient.sex.is_none() {
                return Err(bone_age::Error::Invalid {
                    what: "clinical reading".into(),
                    message: format!(
                        "{}: an age but no sex (and no PatientSex in the file): give --sex M or F",
                        path.display()
                    ),
                });
            }
            let (Some(age), Some(sex)) = (patient.age, patient.sex) else {
                if report.is_some() {
                    return Err(bone_age::Error::Invalid {
                        what: "report".into(),
                        message: format!(
                            "{}: --report needs a clinical reading: give --sex and --age (or \
                             --birth and --exam); the file does not hold them",
                            path.display()
                        ),
                    });
                }
                let mut reading = reading;
                reading.warnings.extend(patient.warnings);
                if args.json {
                    println!("{}", serde_json::json!(reading));
                } else {
                    println!("{reading}");
                    for w in &reading.warnings {
                        eprintln!("warning: {}: {w}", path.display());
                    }
                }
                return Ok(());
            };
            let mut r = Readout::new(reading.estimate()?, sex, age, &readout)?;
            r.from_file = patient.from_file;
            r.warnings.extend(patient.warnings);
            if args.json {
                println!("{}", serde_json::json!(r));
            } else {
                println!("{r}");
            }
            if let Some(file) = &report {
                let title = path
                    .file_name()
                    .map_or("radiograph".into(), |n| n.to_string_lossy().into_owned());
                let mut visit = ReportVisit::new(r, &radiograph.image, &radiograph.input)?;
                if let Some(cfg) = &explain {
                    let e = model.explain(&views, male, cfg)?;
                    visit = visit.with_explanation(&e)?;
                }
                Report {
                    title,
                    visits: vec![visit],
                    model: ModelInfo::of(&model),
                }
                .write(file)?;
                eprintln!("report → {}", file.display());
            }
            Ok(())
        })();
        if let Err(e) = result {
            failed += 1;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "path": path, "error": e.to_string() })
                );
            }
            eprintln!("error: {e}");
        }
    }
    if failed > 0 {
        eprintln!(
            "error: {failed} of {} image(s) could not be predicted",
            args.images.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
