//! The child's sex and chronological age for a reading: what the user gave, else what a
//! DICOM file's tags say (PatientSex; PatientBirthDate with StudyDate, AcquisitionDate or
//! ContentDate). A user-given value wins, with a warning when the file says otherwise.
//! Ages taken from a file carry no dates into outputs (dates identify a patient).
use serde::Serialize;

use super::{ChronologicalAge, Sex};
use crate::preprocess::dicom::DicomMeta;

/// Months by which a given age may differ from the file's before it is called a contradiction.
pub const AGE_TOLERANCE_MONTHS: f64 = 1.0;

/// The sex and age for one reading, and where they came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Patient {
    pub sex: Option<Sex>,
    pub age: Option<ChronologicalAge>,
    /// Which values came from the DICOM file: `sex`, `age`.
    pub from_file: Vec<&'static str>,
    pub warnings: Vec<String>,
}

impl Patient {
    /// Combines the user's values with a file's tags (`None` for PNG and JPEG input).
    pub fn resolve(
        sex: Option<Sex>,
        age: Option<ChronologicalAge>,
        file: Option<&DicomMeta>,
    ) -> Patient {
        let mut p = Patient {
            sex,
            age,
            ..Default::default()
        };
        let Some(meta) = file else { return p };
        let file_sex = match meta.sex.as_deref() {
            Some("M") => Some(Sex::Male),
            Some("F") => Some(Sex::Female),
            _ => None,
        };
        match (sex, file_sex) {
            (None, Some(s)) => {
                p.sex = Some(s);
                p.from_file.push("sex");
            }
            (Some(given), Some(s)) if given != s => p.warnings.push(format!(
                "the given sex ({}) contradicts the file's PatientSex ({}): using the given one",
                given.children(),
                s.children()
            )),
            (None, None) if meta.sex.as_deref() == Some("O") => p
                .warnings
                .push("PatientSex is O (other): give --sex for a clinical reading".into()),
            _ => {}
        }
        let file_age = match (meta.birth_date, meta.exam_date) {
            (Some(b), Some(e)) => match ChronologicalAge::from_dates(b, e) {
                Ok(a) => Some(ChronologicalAge {
                    birth_date: None,
                    exam_date: None,
                    ..a
                }),
                Err(_) => {
                    p.warnings.push(format!(
                        "PatientBirthDate is after the {}: the file's age is ignored",
                        meta.exam_date_tag.unwrap_or("exam date")
                    ));
                    None
                }
            },
            _ => None,
        };
        match (age, file_age) {
            (None, Some(a)) => {
                p.age = Some(a);
                p.from_file.push("age");
            }
            (Some(given), Some(a)) if (given.months - a.months).abs() > AGE_TOLERANCE_MONTHS => {
                p.warnings.push(format!(
                    "the given age ({:.1} months) contradicts the file's ({:.1} months, from \
                     PatientBirthDate and {}): using the given one",
                    given.months,
                    a.months,
                    meta.exam_date_tag.unwrap_or("the exam date")
                ))
            }
            _ => {}
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn meta(sex: &str) -> DicomMeta {
        DicomMeta {
            sex: Some(sex.into()),
            birth_date: NaiveDate::from_ymd_opt(2010, 3, 15),
            exam_date: NaiveDate::from_ymd_opt(2022, 6, 1),
            exam_date_tag: Some("StudyDate"),
            ..Default::default()
        }
    }

    #[test]
    fn the_file_fills_what_the_user_left_out_without_dates() {
        let p = Patient::resolve(None, None, Some(&meta("F")));
        assert_eq!(p.sex, Some(Sex::Female));
        let age = p.age.unwrap();
        assert!((age.months - 146.5).abs() < 0.1, "{}", age.months);
        assert_eq!((age.birth_date, age.exam_date), (None, None));
        assert_eq!(p.from_file, ["sex", "age"]);
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn the_user_wins_with_a_warning_when_the_file_disagrees() {
        let given = ChronologicalAge::parse("10y").unwrap();
        let p = Patient::resolve(Some(Sex::Male), Some(given), Some(&meta("F")));
        assert_eq!((p.sex, p.age), (Some(Sex::Male), Some(given)));
        assert!(p.from_file.is_empty());
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);
        assert!(p.warnings[0].contains("PatientSex") && p.warnings[1].contains("StudyDate"));
        // Agreeing values: no warning.
        let same = ChronologicalAge::parse("146.5").unwrap();
        let p = Patient::resolve(Some(Sex::Female), Some(same), Some(&meta("F")));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        // PNG input: the user's values alone.
        assert_eq!(Patient::resolve(None, None, None), Patient::default());
    }
}
