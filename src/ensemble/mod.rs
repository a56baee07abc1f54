//! Ensembles: several models read as one. A K-fold run (`bone-age train --folds K`: one
//! ordinary run directory per fold, [`kfold`]) or any list of checkpoints; every reading
//! and score reports the members' mean, each member's value and their spread.
//!
//! A K-fold run is calibrated on its folds ([`calibrate`]): each member predicts the fold
//! it never saw, so the out-of-fold predictions cover the whole training set once; their
//! errors, stored in `RUN/ensemble.json`, give the readings' 95% interval together with
//! the members' spread (CV+, [`crate::interval`]), and say how often it holds.
mod calibrate;
mod inference;
pub mod kfold;

use std::path::{Path, PathBuf};

use tch::Device;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::model::Target;

pub use crate::interval::{cv_plus, BandCoverage, Coverage, LEVEL};
pub use calibrate::{calibrate, EnsembleCalibration, MemberRecord, ENSEMBLE_JSON, OOF_CSV};
pub use inference::{evaluate, Views};
pub use kfold::{fold_config, fold_dir, fold_dirs, train_folds};

/// One model of an ensemble.
#[derive(Debug)]
pub struct Member {
    /// `fold-2` for a K-fold run's member; otherwise the checkpoint's path.
    pub name: String,
    pub checkpoint: Checkpoint,
}

/// Models read together. One member is an ordinary checkpoint.
#[derive(Debug)]
pub struct Ensemble {
    pub members: Vec<Member>,
    /// The K-fold run's calibration (`RUN/ensemble.json`), when it matches the members.
    pub calibration: Option<EnsembleCalibration>,
    /// The K-fold run directory, when loaded from one.
    pub root: Option<PathBuf>,
    /// What loading noticed (a calibration made for other weights, an unfinished fold).
    pub warnings: Vec<String>,
}

impl Ensemble {
    /// Loads `paths`: one K-fold run directory (its folds' default checkpoints and its
    /// calibration), or any number of checkpoints or run directories, one member each.
    pub fn load(paths: &[PathBuf], device: Device) -> Result<Ensemble> {
        let (first, rest) = paths.split_first().ok_or_else(|| Error::Invalid {
            what: "ensemble".into(),
            message: "no checkpoint given".into(),
        })?;
        if rest.is_empty() && is_kfold_run(first) {
            return Self::load_folds(first, &fold_dirs(first), device);
        }
        let mut members = Vec::new();
        for p in paths {
            if is_kfold_run(p) {
                return Err(Error::Invalid {
                    what: "ensemble".into(),
                    message: format!(
                        "{} is a K-fold run (an ensemble itself): give it alone, or give its \
                         folds' checkpoints one by one",
                        p.display()
                    ),
                });
            }
            let checkpoint = Checkpoint::load(p, device)?;
            let name = checkpoint.path.display().to_string();
            members.push(Member { name, checkpoint });
        }
        Self::new(members, None, None)
    }

    /// One checkpoint as an ensemble of one.
    pub fn single(checkpoint: Checkpoint) -> Ensemble {
        let name = checkpoint.path.display().to_string();
        Ensemble {
            members: vec![Member { name, checkpoint }],
            calibration: None,
            root: None,
            warnings: Vec::new(),
        }
    }

    fn load_folds(root: &Path, folds: &[(usize, PathBuf)], device: Device) -> Result<Ensemble> {
        let mut members = Vec::new();
        let mut warnings = Vec::new();
        for (k, dir) in folds {
            let checkpoint = Checkpoint::load(dir, device).map_err(|e| Error::Checkpoint {
                path: dir.clone(),
                message: format!(
                    "fold {k} has no usable checkpoint ({e}); train it with `bone-age train \
                     --folds {} --fold {k} --out {} --resume`",
                    folds.len(),
                    root.display()
                ),
            })?;
            let c = &checkpoint.meta.config;
            if !kfold::is_finished(dir, c.train.epochs) {
                warnings.push(format!(
                    "fold-{k} has not finished its {} epochs: it is read as it stands",
                    c.train.epochs
                ));
            }
            members.push(Member {
                name: format!("{}{k}", kfold::FOLD_PREFIX),
                checkpoint,
            });
        }
        let mut calibration = None;
        let json = root.join(ENSEMBLE_JSON);
        if json.is_file() {
            let c = EnsembleCalibration::read(&json)?;
            match c.matches(root, &members) {
                Ok(()) => calibration = Some(c),
                Err(why) => warnings.push(format!(
                    "{}: {why}; its intervals are not used (run `bone-age ensemble calibrate {}`)",
                    json.display(),
                    root.display()
                )),
            }
        } else {
            warnings.push(format!(
                "{} has no {ENSEMBLE_JSON}: intervals are the envelope of the members' own \
                 (run `bone-age ensemble calibrate {}` for calibrated ones)",
                root.display(),
                root.display()
            ));
        }
        let mut e = Self::new(members, calibration, Some(root.to_path_buf()))?;
        e.warnings = warnings;
        Ok(e)
    }

    fn new(
        members: Vec<Member>,
        calibration: Option<EnsembleCalibration>,
        root: Option<PathBuf>,
    ) -> Result<Ensemble> {
        check_members(&members)?;
        Ok(Ensemble {
            members,
            calibration,
            root,
            warnings: Vec::new(),
        })
    }

    /// The first member's checkpoint (every member shares its input and target).
    pub fn first(&self) -> &Checkpoint {
        &self.members[0].checkpoint
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn target(&self) -> Target {
        self.first().model.config.target
    }

    /// Reads the networks' own outputs: drops every member's linear recalibration (the
    /// ensemble's residuals then come from its raw ones).
    pub fn without_calibration(&mut self) {
        for m in &mut self.members {
            m.checkpoint.meta.calibration = None;
        }
        if let Some(c) = &mut self.calibration {
            c.use_raw();
        }
    }

    /// Changes every member's stored config (e.g. the robustness checks' `squeeze`).
    pub fn for_each_config(&mut self, f: impl Fn(&mut crate::config::Config)) {
        for m in &mut self.members {
            f(&mut m.checkpoint.meta.config);
        }
    }

    /// The residuals CV+ combines with the members' passes, and how they were measured.
    pub fn residuals(&self) -> Option<(&[Vec<f64>], String)> {
        let c = self.calibration.as_ref()?;
        let n: usize = c.residuals.iter().map(Vec::len).sum();
        Some((
            &c.residuals,
            format!(
                "CV+: out-of-fold residuals of {} folds, {n} images, and the members' spread",
                c.members.len()
            ),
        ))
    }
}

/// Members must take the same input and predict the same thing; the error names both.
pub fn check_members(members: &[Member]) -> Result<()> {
    let Some(first) = members.first() else {
        return Err(Error::Invalid {
            what: "ensemble".into(),
            message: "no members".into(),
        });
    };
    let describe = |m: &Member| {
        let meta = &m.checkpoint.meta;
        let [c, h, w] = meta.input_shape;
        format!(
            "{} ({}) takes {c}×{h}×{w} and predicts {}",
            m.name,
            m.checkpoint.path.display(),
            match meta.config.model.target {
                Target::Age => "bone age",
                Target::Sex => "sex",
            }
        )
    };
    for m in &members[1..] {
        let (a, b) = (&first.checkpoint.meta, &m.checkpoint.meta);
        if a.input_shape != b.input_shape || a.config.model.target != b.config.model.target {
            return Err(Error::Invalid {
                what: "ensemble".into(),
                message: format!(
                    "its members differ: {}, but {}; an ensemble's members must share their \
                     input size and target",
                    describe(first),
                    describe(m)
                ),
            });
        }
    }
    Ok(())
}

/// The weights file a member was loaded from, relative to `root` when inside it.
pub fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

/// Whether `path` holds a K-fold run.
pub fn is_kfold_run(path: &Path) -> bool {
    !fold_dirs(path).is_empty()
}
