//! Reading the readout's tags ([`DicomMeta`]) from a data set. Patient names and IDs are
//! never read, so they cannot be printed, logged or written anywhere.
use chrono::NaiveDate;
use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, Tag};

use super::DicomMeta;

/// A string element's trimmed text; `None` when absent or empty.
pub(super) fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok()??;
    let s = e.to_str().ok()?;
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!s.is_empty()).then(|| s.to_string())
}

/// A DA element (`YYYYMMDD`, or the retired `YYYY.MM.DD`).
fn date(
    obj: &InMemDicomObject,
    tag: Tag,
    name: &str,
    problems: &mut Vec<String>,
) -> Option<NaiveDate> {
    let s = text(obj, tag)?;
    let d = NaiveDate::parse_from_str(&s, "%Y%m%d")
        .or_else(|_| NaiveDate::parse_from_str(&s, "%Y.%m.%d"));
    match d {
        Ok(d) => Some(d),
        Err(_) => {
            // The value itself is not repeated: a date is identifying.
            problems.push(format!("{name} is not a DICOM date (YYYYMMDD): ignored"));
            None
        }
    }
}

impl DicomMeta {
    /// Reads the readout's tags of `obj`.
    pub fn of(obj: &InMemDicomObject) -> DicomMeta {
        let mut problems = Vec::new();
        let sex = text(obj, tags::PATIENT_SEX).and_then(|s| {
            let s = s.to_ascii_uppercase();
            if matches!(s.as_str(), "M" | "F" | "O") {
                Some(s)
            } else {
                problems.push(format!("PatientSex {s:?} is not M, F or O: ignored"));
                None
            }
        });
        let birth_date = date(
            obj,
            tags::PATIENT_BIRTH_DATE,
            "PatientBirthDate",
            &mut problems,
        );
        let mut exam_date = None;
        let mut exam_date_tag = None;
        for (tag, name) in [
            (tags::STUDY_DATE, "StudyDate"),
            (tags::ACQUISITION_DATE, "AcquisitionDate"),
            (tags::CONTENT_DATE, "ContentDate"),
        ] {
            if let Some(d) = date(obj, tag, name, &mut problems) {
                exam_date = Some(d);
                exam_date_tag = Some(name);
                break;
            }
        }
        let laterality = text(obj, tags::IMAGE_LATERALITY)
            .or_else(|| text(obj, tags::LATERALITY))
            .map(|s| s.to_ascii_uppercase());
        DicomMeta {
            sex,
            birth_date,
            exam_date,
            exam_date_tag,
            body_part: text(obj, tags::BODY_PART_EXAMINED).map(|s| s.to_ascii_uppercase()),
            laterality,
            problems,
        }
    }
}
