//! The clinical readout (`[readout]`): a bone age set against the child's chronological
//! age and the Greulich–Pyle reference, as the ACR/RSNA common data element for the
//! pediatric bone age report has it: chronological age, skeletal age, the Brush Foundation
//! mean and SD at that age, a Z-score and a determination (delayed, normal, advanced or
//! indeterminate), with the model's own 95% interval for the bone age.
mod age;
mod patient;
mod reference;
mod visits;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::AGE_RANGE_MONTHS;

pub use age::{parse_date, years_months, ChronologicalAge, DAYS_PER_MONTH};
pub use patient::{Patient, AGE_TOLERANCE_MONTHS};
pub use reference::{Reference, ReferencePoint, Sex, POPULATION_NOTE, TABLE};
pub use visits::{read_visits, Visit};

/// What the Z-score is centred on. Both are in use and they can disagree, so every output
/// names the one it used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Centring {
    /// Z = (BA − CA) / SD(CA, sex): the usual score.
    #[default]
    Chronological,
    /// Z = (BA − mean BA(CA, sex)) / SD(CA, sex): against the reference children's mean.
    BrushMean,
}

impl Centring {
    /// The setting's name, as `readout.centring` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Centring::Chronological => "chronological",
            Centring::BrushMean => "brush_mean",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Centring::Chronological => "centred on chronological age: (BA − CA) / SD",
            Centring::BrushMean => "centred on the Brush mean bone age: (BA − mean) / SD",
        }
    }
}

/// `[readout]`: how readings are scored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadoutConfig {
    pub centring: Centring,
    /// |Z| up to this many SDs is normal.
    pub normal_sd: f64,
}

impl Default for ReadoutConfig {
    fn default() -> Self {
        Self {
            centring: Centring::Chronological,
            normal_sd: 2.0,
        }
    }
}

impl ReadoutConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.normal_sd.is_finite() && self.normal_sd > 0.0) {
            return Err(Error::ConfigKey {
                key: "readout.normal_sd".into(),
                message: format!("{} must be a positive number of SDs", self.normal_sd),
            });
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Determination {
    Delayed,
    Normal,
    Advanced,
    Indeterminate,
}

impl std::fmt::Display for Determination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Determination::Delayed => "delayed",
            Determination::Normal => "normal",
            Determination::Advanced => "advanced",
            Determination::Indeterminate => "indeterminate",
        })
    }
}

/// One ensemble member's value for a radiograph.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemberValue {
    /// `fold-2`, or the checkpoint's path.
    pub name: String,
    pub value: f64,
}

/// A model's bone age for one radiograph, as the readout takes it
/// (`predict::Reading::estimate` gives one).
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    pub image: PathBuf,
    /// Bone age, months.
    pub months: f64,
    /// Whether the checkpoint's recalibration was applied.
    pub calibrated: bool,
    /// What looked wrong with the image or the prediction.
    pub warnings: Vec<String>,
    /// The model's 95% interval for the bone age, months.
    pub interval: Option<[f64; 2]>,
    /// How the interval was made, or why there is none.
    pub interval_source: String,
    /// Ensembles: each member's bone age (empty for one checkpoint).
    pub members: Vec<MemberValue>,
    /// Ensembles: the standard deviation of the members' bone ages.
    pub spread: Option<f64>,
}

/// One radiograph read against the reference: every field of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Readout {
    pub image: PathBuf,
    pub sex: Sex,
    pub bone_age_months: f64,
    /// The model's 95% interval for the bone age: from one checkpoint's validation
    /// residuals, or an ensemble's out-of-fold residuals and spread.
    pub bone_age_interval: Option<[f64; 2]>,
    /// How the interval was made, or why there is none.
    pub interval_note: String,
    /// Ensembles: each member's bone age.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberValue>,
    /// Ensembles: the standard deviation of the members' bone ages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread_months: Option<f64>,
    pub chronological_age: ChronologicalAge,
    /// BA − CA, months.
    pub difference_months: f64,
    /// The reference at this CA and sex (absent outside the table).
    pub reference: Option<ReferencePoint>,
    pub z: Option<f64>,
    /// Z at the ends of the bone age's interval.
    pub z_interval: Option<[f64; 2]>,
    pub determination: Determination,
    /// Why the determination is indeterminate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub centring: Centring,
    pub normal_sd: f64,
    /// Whether the checkpoint's recalibration was applied to the bone age.
    pub calibrated: bool,
    /// Which of the sex and the age were read from the DICOM file's tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub from_file: Vec<&'static str>,
    pub warnings: Vec<String>,
    pub population_note: &'static str,
}

impl Readout {
    /// Scores `estimate` (with the model's interval it carries) for a child of `sex` and
    /// `age`. (`from_file` starts empty: [`Patient`] says which values a DICOM file gave.)
    pub fn new(
        estimate: Estimate,
        sex: Sex,
        age: ChronologicalAge,
        config: &ReadoutConfig,
    ) -> Result<Readout> {
        config.validate()?;
        let ba = estimate.months;
        let ca = age.months;
        let (lo, hi) = AGE_RANGE_MONTHS;
        let bone_age_interval = estimate
            .interval
            .map(|[a, b]| [a.clamp(lo, hi), b.clamp(lo, hi)]);
        let (reference, reason) = match Reference::greulich_pyle().at(sex, ca) {
            Ok(p) => (Some(p), None),
            Err(why) => (None, Some(why)),
        };
        let score = |p: &ReferencePoint, ba: f64| {
            let centre = match config.centring {
                Centring::Chronological => ca,
                Centring::BrushMean => p.mean_months,
            };
            (ba - centre) / p.sd_months
        };
        let z = reference.as_ref().map(|p| score(p, ba));
        let z_interval = reference
            .as_ref()
            .zip(bone_age_interval)
            .map(|(p, [lo, hi])| [score(p, lo), score(p, hi)]);
        let determination = match z {
            None => Determination::Indeterminate,
            Some(z) if z < -config.normal_sd => Determination::Delayed,
            Some(z) if z > config.normal_sd => Determination::Advanced,
            Some(_) => Determination::Normal,
        };
        let mut warnings = estimate.warnings;
        if let Some([lo, hi]) = z_interval {
            let t = config.normal_sd;
            if (lo < -t) != (hi < -t) || (lo > t) != (hi > t) {
                warnings.push(format!(
                    "the bone age's 95% interval spans Z {lo:+.2} to {hi:+.2}, across the ±{t} SD \
                     threshold: the determination is not certain"
                ));
            }
        }
        Ok(Readout {
            image: estimate.image,
            sex,
            bone_age_months: ba,
            bone_age_interval,
            interval_note: estimate.interval_source,
            members: estimate.members,
            spread_months: estimate.spread,
            chronological_age: age,
            difference_months: ba - ca,
            reference,
            z,
            z_interval,
            determination,
            reason,
            centring: config.centring,
            normal_sd: config.normal_sd,
            calibrated: estimate.calibrated,
            from_file: Vec::new(),
            warnings,
            population_note: POPULATION_NOTE,
        })
    }

    /// "normal (|Z| ≤ 2 SD)", "indeterminate (why)" and so on.
    pub fn verdict(&self) -> String {
        let t = self.normal_sd;
        match (self.determination, &self.reason) {
            (Determination::Indeterminate, Some(why)) => format!("indeterminate: {why}"),
            (Determination::Delayed, _) => format!("delayed (Z below −{t} SD)"),
            (Determination::Advanced, _) => format!("advanced (Z above +{t} SD)"),
            (d, _) => format!("{d} (within ±{t} SD)"),
        }
    }

    /// The report's rows: (field, value), in the order the CDE lists them.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let ba = self.bone_age_months;
        let mut rows = vec![("Bone age", format!("{ba:.1} months ({})", years_months(ba)))];
        rows.push((
            "Model's 95% interval",
            match self.bone_age_interval {
                Some([lo, hi]) => format!("{lo:.1}–{hi:.1} months ({})", self.interval_note),
                None => self.interval_note.clone(),
            },
        ));
        if let Some(sd) = self.spread_months {
            let each: Vec<String> = self
                .members
                .iter()
                .map(|m| format!("{} {:.1}", m.name, m.value))
                .collect();
            rows.push((
                "Ensemble members",
                format!("{} months; SD {sd:.1}", each.join(", ")),
            ));
        }
        let ca = &self.chronological_age;
        let dates = match (ca.birth_date, ca.exam_date) {
            (Some(b), Some(e)) => format!("; born {b}, examined {e}"),
            _ => String::new(),
        };
        let source = |what| {
            if self.from_file.contains(&what) {
                " (from the DICOM file)"
            } else {
                ""
            }
        };
        rows.push((
            "Chronological age",
            format!(
                "{:.1} months ({}){dates}{}",
                ca.months,
                years_months(ca.months),
                source("age")
            ),
        ));
        rows.push((
            "Sex",
            format!(
                "{}{}",
                self.sex.children().trim_end_matches('s'),
                source("sex")
            ),
        ));
        rows.push(("BA − CA", format!("{:+.1} months", self.difference_months)));
        rows.push((
            "Reference mean, SD",
            match &self.reference {
                Some(p) => format!(
                    "{:.1}, {:.2} months (Greulich–Pyle, {} at {:.1} months)",
                    p.mean_months,
                    p.sd_months,
                    self.sex.children(),
                    p.ca_months
                ),
                None => "none at this age".into(),
            },
        ));
        rows.push((
            "Z-score",
            match (self.z, self.z_interval) {
                (Some(z), Some([lo, hi])) => format!(
                    "{z:+.2} (95%: {lo:+.2} to {hi:+.2}); {}",
                    self.centring.describe()
                ),
                (Some(z), None) => format!("{z:+.2}; {}", self.centring.describe()),
                _ => "none".into(),
            },
        ));
        rows.push(("Determination", self.verdict()));
        rows
    }
}

impl std::fmt::Display for Readout {
    /// The image, then one field per line, the warnings and the population note.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.image.display())?;
        for (k, v) in self.rows() {
            writeln!(f, "  {k:<22}{v}")?;
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        write!(f, "  {}", self.population_note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(ba: f64) -> Estimate {
        Estimate {
            image: "hand.png".into(),
            months: ba,
            calibrated: false,
            warnings: vec![],
            interval: None,
            interval_source: "unknown: no residuals".into(),
            members: vec![],
            spread: None,
        }
    }

    fn read(ba: f64, sex: Sex, ca: &str, centring: Centring) -> Readout {
        let config = ReadoutConfig {
            centring,
            ..Default::default()
        };
        Readout::new(
            reading(ba),
            sex,
            ChronologicalAge::parse(ca).unwrap(),
            &config,
        )
        .unwrap()
    }

    #[test]
    fn the_girl_of_ca_54_and_ba_80_under_both_centrings() {
        let r = read(80.0, Sex::Female, "54", Centring::Chronological);
        assert!((r.z.unwrap() - 2.4231).abs() < 1e-3, "{:?}", r.z);
        assert_eq!(r.determination, Determination::Advanced);
        let r = read(80.0, Sex::Female, "54", Centring::BrushMean);
        assert!((r.z.unwrap() - 1.8583).abs() < 1e-3, "{:?}", r.z);
        assert_eq!(r.determination, Determination::Normal);
        assert!(r.to_string().contains("centred on the Brush mean"), "{r}");
        assert_eq!(r.difference_months, 26.0);
    }

    #[test]
    fn centring_names_are_the_config_spelling() {
        for c in [Centring::Chronological, Centring::BrushMean] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.name());
        }
    }

    #[test]
    fn delayed_normal_and_the_threshold() {
        // A boy of 10 y (SD 9.79): 100 months is Z −2.04.
        let r = read(100.0, Sex::Male, "10y", Centring::Chronological);
        assert_eq!(r.determination, Determination::Delayed);
        let config = ReadoutConfig {
            normal_sd: 2.5,
            ..Default::default()
        };
        let r2 = Readout::new(
            reading(100.0),
            Sex::Male,
            ChronologicalAge::parse("10y").unwrap(),
            &config,
        )
        .unwrap();
        assert_eq!(r2.determination, Determination::Normal);
        assert!(r2.verdict().contains("±2.5"), "{}", r2.verdict());
        assert!(ReadoutConfig {
            normal_sd: 0.0,
            ..Default::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn outside_the_table_is_indeterminate_with_the_reason() {
        for (sex, ca) in [
            (Sex::Male, "2m"),
            (Sex::Female, "16y6m"),
            (Sex::Male, "17y1m"),
        ] {
            let r = read(150.0, sex, ca, Centring::Chronological);
            assert_eq!(r.determination, Determination::Indeterminate, "{ca}");
            assert!(r
                .reason
                .as_deref()
                .unwrap()
                .contains("outside the reference"));
            assert_eq!(r.z, None);
            assert!(
                r.to_string().contains("indeterminate: chronological age"),
                "{r}"
            );
        }
    }

    #[test]
    fn the_interval_carries_through_to_z_and_flags_a_straddled_threshold() {
        let age = ChronologicalAge::parse("54").unwrap();
        let estimate = Estimate {
            interval: Some([60.0, 100.0]),
            interval_source: "validation residuals".into(),
            members: vec![
                MemberValue {
                    name: "fold-1".into(),
                    value: 78.0,
                },
                MemberValue {
                    name: "fold-2".into(),
                    value: 82.0,
                },
            ],
            spread: Some(2.83),
            ..reading(80.0)
        };
        let r = Readout::new(estimate, Sex::Female, age, &ReadoutConfig::default()).unwrap();
        assert_eq!(r.bone_age_interval, Some([60.0, 100.0]));
        let [lo, hi] = r.z_interval.unwrap();
        assert!((lo - 6.0 / 10.73).abs() < 1e-9 && (hi - 46.0 / 10.73).abs() < 1e-9);
        assert!(
            r.warnings.iter().any(|w| w.contains("not certain")),
            "{:?}",
            r.warnings
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["determination"], "advanced");
        assert_eq!(json["centring"], "chronological");
        assert_eq!(json["reference"]["sd_months"], 10.73);
        assert!(
            r.to_string()
                .contains("fold-1 78.0, fold-2 82.0 months; SD 2.8"),
            "{r}"
        );
        let none = read(80.0, Sex::Female, "54", Centring::Chronological);
        assert!(none.interval_note.starts_with("unknown"));
        assert!(none.to_string().contains("unknown: no residuals"), "{none}");
    }
}
