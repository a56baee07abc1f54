//! `bone-age ensemble`: calibrate a K-fold run on its out-of-fold predictions, or show
//! what its calibration holds.
use std::path::{Path, PathBuf};

use anyhow::Result;
use bone_age::ensemble::{EnsembleCalibration, ENSEMBLE_JSON, OOF_CSV};
use bone_age::evaluate::EvalOptions;
use bone_age::Config;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum EnsembleCommand {
    /// Calibrate a K-fold run (`train --folds K`): each fold's model predicts the fold it
    /// held out, so the out-of-fold predictions cover the training set once. Writes their
    /// errors to RUN/ensemble.json (the 95% interval of every later reading: CV+, combining
    /// them with the members' spread) and one row per image to RUN/oof.csv, and prints the
    /// out-of-fold MAE and the coverage of the interval overall and by age band (each fold's
    /// images judged by an interval made from the other folds' errors).
    ///
    /// Run it once every fold has finished (train --folds K without --fold does it itself).
    Calibrate {
        /// The K-fold run directory (holding fold-1 … fold-K).
        run: PathBuf,
        /// The dataset the folds were trained on [config: paths.data_dir].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Average this many augmented passes with the plain one in the out-of-fold
        /// predictions (use the same TTA when predicting).
        #[arg(long, default_value_t = 0)]
        tta: usize,
        /// Print the calibration summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print a calibrated run's members, out-of-fold scores and coverage table.
    Show {
        run: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: EnsembleCommand, config: &Config) -> Result<()> {
    match cmd {
        EnsembleCommand::Calibrate {
            run,
            data_dir,
            tta,
            json,
        } => {
            let data_dir = data_dir.unwrap_or_else(|| config.paths.data_dir.clone());
            let device = bone_age::runtime::init(&config.runtime)?;
            let c = calibrate(&run, &data_dir, config, device, tta, !json)?;
            if json {
                println!("{}", serde_json::to_string(&summary_json(&c))?);
            }
        }
        EnsembleCommand::Show { run, json } => {
            let c = EnsembleCalibration::read(&run.join(ENSEMBLE_JSON))?;
            if json {
                println!("{}", serde_json::to_string(&summary_json(&c))?);
            } else {
                print_summary(&run, &c);
            }
        }
    }
    Ok(())
}

/// Calibrates `run` (see `EnsembleCommand::Calibrate`), printing the summary when `print`
/// (what `train --folds K` ends with).
pub fn calibrate(
    run: &Path,
    data_dir: &Path,
    config: &Config,
    device: tch::Device,
    tta: usize,
    print: bool,
) -> Result<EnsembleCalibration> {
    eprintln!(
        "calibrating {} on the out-of-fold predictions of {}",
        run.display(),
        data_dir.display()
    );
    let options = EvalOptions {
        tta,
        ..Default::default()
    };
    let cache = config.paths.cache_dir();
    let c = bone_age::ensemble::calibrate(run, data_dir, &cache, device, &options)?;
    if print {
        print_summary(run, &c);
    }
    Ok(c)
}

/// The calibration without its residual lists.
fn summary_json(c: &EnsembleCalibration) -> serde_json::Value {
    let mut v = serde_json::to_value(c).expect("calibration serialises");
    if let Some(o) = v.as_object_mut() {
        o.remove("residuals");
        o.remove("raw_residuals");
    }
    v
}

fn print_summary(run: &Path, c: &EnsembleCalibration) {
    println!(
        "ensemble          {} ({} members)",
        run.display(),
        c.members.len()
    );
    for m in &c.members {
        println!(
            "  {:<16}{} (epoch {}, {} held-out images)",
            m.name,
            m.weights.display(),
            m.epoch,
            m.images
        );
    }
    println!(
        "out-of-fold       {} images, MAE {:.2} months, median abs error {:.2}{}",
        c.oof_images,
        c.oof_mae_months,
        c.oof_median_abs_error_months,
        if c.missing > 0 {
            format!(" ({} unreadable training images left out)", c.missing)
        } else {
            String::new()
        }
    );
    println!(
        "coverage          {:.1}% of out-of-fold truths inside their nominal {:.0}% interval \
         (each fold's interval from the other folds' errors)",
        c.coverage.coverage * 100.0,
        c.level * 100.0
    );
    println!("{}", c.coverage);
    println!(
        "written           {}, {}",
        run.join(ENSEMBLE_JSON).display(),
        run.join(OOF_CSV).display()
    );
}
