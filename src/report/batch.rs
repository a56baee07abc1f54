//! Batch visits: every row of a visits CSV read against the reference, into one output
//! directory that a re-run replaces whole: `readings.csv` (one row per visit, every
//! field), `charts/PATIENT.png` (one growth chart per patient), `reports/PATIENT.html`
//! when asked for, and `summary.json`. A missing or unreadable image is recorded and
//! skipped, and the summary counts it.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{ModelInfo, Report, ReportVisit};
use crate::ensemble::{Ensemble, Views};
use crate::error::{Error, Result};
use crate::explain::ExplainConfig;
use crate::plot::GrowthChart;
use crate::readout::{Readout, ReadoutConfig, Visit};

/// The file that marks a directory as a visits output (and that a re-run may replace).
pub const READINGS_CSV: &str = "readings.csv";

/// What became of one visit.
#[derive(Clone, Debug, Serialize)]
pub struct VisitOutcome {
    pub line: usize,
    /// The patient's label, or the image's file stem when the CSV has none.
    pub patient: String,
    pub image: PathBuf,
    /// `read`, `missing` (no such file) or `failed` (it could not be read or predicted).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readout: Option<Readout>,
}

/// The counts `summary.json` holds, and where everything went.
#[derive(Clone, Debug, Serialize)]
pub struct VisitsSummary {
    pub visits: usize,
    pub read: usize,
    pub missing: usize,
    pub failed: usize,
    pub patients: usize,
    pub out: PathBuf,
    pub readout: ReadoutConfig,
    pub model: ModelInfo,
    pub outcomes: Vec<VisitOutcome>,
}

/// One row of `readings.csv`.
#[derive(Serialize)]
struct Row<'a> {
    line: usize,
    patient: &'a str,
    image: String,
    status: &'a str,
    error: &'a str,
    sex: String,
    birth_date: String,
    exam_date: String,
    chronological_age_months: String,
    bone_age_months: String,
    bone_age_low: String,
    bone_age_high: String,
    /// Ensembles: the members' SD, and each member's bone age (`fold-1=118.2|…`).
    spread_months: String,
    members: String,
    difference_months: String,
    reference_mean_months: String,
    reference_sd_months: String,
    z: String,
    z_low: String,
    z_high: String,
    determination: String,
    reason: String,
    centring: String,
    normal_sd: f64,
    calibrated: String,
    warnings: String,
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or(String::new(), |x| format!("{x:.digits$}"))
}

/// How [`run_visits`] reads. `Default`: no reports, no TTA.
#[derive(Clone, Debug, Default)]
pub struct VisitOptions {
    /// One HTML report per patient in `OUT/reports`.
    pub reports: bool,
    /// The explanation map each report shows (none: no map).
    pub explain: Option<ExplainConfig>,
    /// Augmented passes averaged with the plain one.
    pub tta: usize,
}

/// Reads every visit with `model` (a checkpoint or an ensemble) and writes the output
/// directory `out` (see the module comment). `progress` is told each visit.
pub fn run_visits(
    model: &Ensemble,
    visits: &[Visit],
    out: &Path,
    config: &ReadoutConfig,
    options: &VisitOptions,
    mut progress: impl FnMut(&VisitOutcome),
) -> Result<VisitsSummary> {
    config.validate()?;
    let reports = options.reports;
    let info = ModelInfo::of(model);
    let mut outcomes = Vec::new();
    let mut by_patient: BTreeMap<String, Vec<ReportVisit>> = BTreeMap::new();
    for v in visits {
        let patient = v.patient.clone().unwrap_or_else(|| {
            v.image.file_stem().map_or(format!("line-{}", v.line), |s| {
                s.to_string_lossy().into_owned()
            })
        });
        let mut outcome = VisitOutcome {
            line: v.line,
            patient: patient.clone(),
            image: v.image.clone(),
            status: "read",
            error: None,
            readout: None,
        };
        if !v.image.is_file() {
            outcome.status = "missing";
            outcome.error = Some(format!("{}: no such file", v.image.display()));
        } else {
            match read_one(model, v, config, options.tta) {
                Ok((readout, views)) => {
                    let visit = if reports {
                        let rg = views.primary();
                        let visit = ReportVisit::new(readout.clone(), &rg.image, &rg.input)?;
                        Some(match &options.explain {
                            Some(cfg) => {
                                let male = Some(v.sex.is_male());
                                let e = model.explain(&views, male, cfg)?;
                                visit.with_explanation(&e)?
                            }
                            None => visit,
                        })
                    } else {
                        None
                    };
                    let entry = by_patient.entry(patient).or_default();
                    entry.push(visit.unwrap_or(ReportVisit {
                        readout: readout.clone(),
                        radiograph_png: Vec::new(),
                        input_png: Vec::new(),
                        explanation_png: None,
                    }));
                    outcome.readout = Some(readout);
                }
                Err(e) => {
                    outcome.status = "failed";
                    outcome.error = Some(e.to_string());
                }
            }
        }
        progress(&outcome);
        outcomes.push(outcome);
    }
    let count = |s: &str| outcomes.iter().filter(|o| o.status == s).count();
    let summary = VisitsSummary {
        visits: visits.len(),
        read: count("read"),
        missing: count("missing"),
        failed: count("failed"),
        patients: by_patient.len(),
        out: out.to_path_buf(),
        readout: config.clone(),
        model: info,
        outcomes,
    };
    crate::files::replace_dir(out, READINGS_CSV, |dir| {
        write_readings(&dir.join(READINGS_CSV), &summary.outcomes)?;
        let names = file_names(by_patient.keys());
        let charts = dir.join("charts");
        std::fs::create_dir_all(&charts).map_err(|e| Error::io(&charts, e))?;
        for (patient, visits) in &by_patient {
            let readouts: Vec<Readout> = visits.iter().map(|v| v.readout.clone()).collect();
            let chart = GrowthChart::of(&readouts, patient)?;
            crate::plot::save(
                &chart,
                &charts.join(format!("{}.png", names[patient])),
                None,
            )?;
        }
        if reports {
            let dir = dir.join("reports");
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            for (patient, visits) in by_patient {
                let path = dir.join(format!("{}.html", names[&patient]));
                let report = Report {
                    title: patient,
                    visits,
                    model: summary.model.clone(),
                };
                report.write(&path)?;
            }
        }
        let json = serde_json::to_string_pretty(&summary).map_err(|e| Error::Invalid {
            what: "summary.json".into(),
            message: e.to_string(),
        })?;
        std::fs::write(dir.join("summary.json"), json).map_err(|e| Error::io(dir, e))
    })?;
    Ok(summary)
}

fn read_one(
    model: &Ensemble,
    v: &Visit,
    config: &ReadoutConfig,
    tta: usize,
) -> Result<(Readout, Views)> {
    let views = model.load_radiograph(&v.image)?;
    let reading = model.read(&views, Some(v.sex.is_male()), tta)?;
    let readout = Readout::new(reading.estimate()?, v.sex, v.age, config)?;
    Ok((readout, views))
}

fn write_readings(path: &Path, outcomes: &[VisitOutcome]) -> Result<()> {
    let mut w = csv::Writer::from_path(path).map_err(|e| Error::io(path, e.into()))?;
    for o in outcomes {
        let r = o.readout.as_ref();
        let ca = r.map(|r| r.chronological_age);
        let date = |d: Option<chrono::NaiveDate>| d.map_or(String::new(), |d| d.to_string());
        let row = Row {
            line: o.line,
            patient: &o.patient,
            image: o.image.display().to_string(),
            status: o.status,
            error: o.error.as_deref().unwrap_or(""),
            sex: r.map_or(String::new(), |r| r.sex.to_string()),
            birth_date: date(ca.and_then(|c| c.birth_date)),
            exam_date: date(ca.and_then(|c| c.exam_date)),
            chronological_age_months: num(ca.map(|c| c.months), 2),
            bone_age_months: num(r.map(|r| r.bone_age_months), 2),
            bone_age_low: num(r.and_then(|r| r.bone_age_interval).map(|i| i[0]), 2),
            bone_age_high: num(r.and_then(|r| r.bone_age_interval).map(|i| i[1]), 2),
            spread_months: num(r.and_then(|r| r.spread_months), 2),
            members: r.map_or(String::new(), |r| {
                r.members
                    .iter()
                    .map(|m| format!("{}={:.2}", m.name, m.value))
                    .collect::<Vec<_>>()
                    .join("|")
            }),
            difference_months: num(r.map(|r| r.difference_months), 2),
            reference_mean_months: num(r.and_then(|r| r.reference).map(|p| p.mean_months), 2),
            reference_sd_months: num(r.and_then(|r| r.reference).map(|p| p.sd_months), 3),
            z: num(r.and_then(|r| r.z), 3),
            z_low: num(r.and_then(|r| r.z_interval).map(|i| i[0]), 3),
            z_high: num(r.and_then(|r| r.z_interval).map(|i| i[1]), 3),
            determination: r.map_or(String::new(), |r| r.determination.to_string()),
            reason: r.and_then(|r| r.reason.clone()).unwrap_or_default(),
            centring: r.map_or(String::new(), |r| r.centring.name().to_string()),
            normal_sd: r.map_or(f64::NAN, |r| r.normal_sd),
            calibrated: r.map_or(String::new(), |r| r.calibrated.to_string()),
            warnings: r.map_or(String::new(), |r| r.warnings.join(" | ")),
        };
        w.serialize(row).map_err(|e| Error::io(path, e.into()))?;
    }
    w.flush().map_err(|e| Error::io(path, e))
}

/// A file name per patient label: letters, digits, `-`, `_` and `.` kept, others `_`,
/// and a number added where two labels would collide.
fn file_names<'a>(patients: impl Iterator<Item = &'a String>) -> BTreeMap<String, String> {
    let mut used = std::collections::HashSet::new();
    let mut names = BTreeMap::new();
    for p in patients {
        let base: String = p
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let base = if base.trim_matches('.').is_empty() {
            "patient".to_string()
        } else {
            base
        };
        let mut name = base.clone();
        let mut k = 2;
        while !used.insert(name.clone()) {
            name = format!("{base}-{k}");
            k += 1;
        }
        names.insert(p.clone(), name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_labels_become_distinct_safe_file_names() {
        let labels = [
            "a/b".to_string(),
            "a_b".to_string(),
            "..".to_string(),
            "P 7".to_string(),
        ];
        let names = file_names(labels.iter());
        assert_eq!(names["a/b"], "a_b");
        assert_eq!(names["a_b"], "a_b-2");
        assert_eq!(names[".."], "patient");
        assert_eq!(names["P 7"], "P_7");
    }
}
