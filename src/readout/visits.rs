//! The visits CSV of a batch readout: `image,sex,age` or `image,sex,birth_date,exam_date`,
//! with an optional `patient` column. Images are relative to the CSV's directory. Every
//! bad row is reported with its line and field before anything is predicted.
use std::path::{Path, PathBuf};

use super::{ChronologicalAge, Sex};
use crate::error::{Error, Result};

/// One row: a radiograph of a child of known sex and age.
#[derive(Clone, Debug, PartialEq)]
pub struct Visit {
    /// The CSV line (1 is the header).
    pub line: usize,
    /// The patient's label, as given; `None` when the CSV has no `patient` column.
    pub patient: Option<String>,
    pub image: PathBuf,
    pub sex: Sex,
    pub age: ChronologicalAge,
}

/// Reads and checks every row of `path`. Columns beyond those above are ignored.
pub fn read_visits(path: &Path) -> Result<Vec<Visit>> {
    let csv_err = |line: usize, message: String| Error::Csv {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_path(path)
        .map_err(|e| csv_err(0, e.to_string()))?;
    let headers = reader
        .headers()
        .map_err(|e| csv_err(1, e.to_string()))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (image, sex) = match (col("image"), col("sex")) {
        (Some(i), Some(s)) => (i, s),
        _ => {
            return Err(csv_err(
                1,
                format!(
                    "the header {:?} needs columns image and sex",
                    headers.iter().collect::<Vec<_>>()
                ),
            ))
        }
    };
    let ages = match (col("age"), col("birth_date"), col("exam_date")) {
        (Some(a), None, None) => Ages::Age(a),
        (None, Some(b), Some(e)) => Ages::Dates(b, e),
        _ => {
            return Err(csv_err(
                1,
                "give either an age column or both birth_date and exam_date".into(),
            ))
        }
    };
    let patient = col("patient");
    let base = path.parent().unwrap_or(Path::new("."));
    let (mut visits, mut problems) = (Vec::new(), Vec::new());
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let field = |k: usize| record.get(k).unwrap_or("");
        let bad = |name: &str, e: Error| format!("line {line}, field {name}: {e}");
        let parsed = (|| -> std::result::Result<Visit, String> {
            if field(image).is_empty() {
                return Err(format!("line {line}, field image: empty"));
            }
            let sex = Sex::parse(field(sex)).map_err(|e| bad("sex", e))?;
            let age = match ages {
                Ages::Age(a) => ChronologicalAge::parse(field(a)).map_err(|e| bad("age", e))?,
                Ages::Dates(b, e) => {
                    let birth = super::parse_date("birth date", field(b))
                        .map_err(|x| bad("birth_date", x))?;
                    let exam = super::parse_date("exam date", field(e))
                        .map_err(|x| bad("exam_date", x))?;
                    ChronologicalAge::from_dates(birth, exam).map_err(|x| bad("exam_date", x))?
                }
            };
            let patient = patient.map(|p| field(p).to_string());
            if patient.as_deref() == Some("") {
                return Err(format!("line {line}, field patient: empty"));
            }
            Ok(Visit {
                line,
                patient,
                image: base.join(field(image)),
                sex,
                age,
            })
        })();
        match parsed {
            Ok(v) => visits.push(v),
            Err(p) => problems.push(p),
        }
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(20);
        return Err(Error::Dataset {
            path: path.to_path_buf(),
            message: format!(
                "{n} bad row(s), nothing was read:\n  {}",
                problems.join("\n  ")
            ),
        });
    }
    if visits.is_empty() {
        return Err(csv_err(2, "no visits".into()));
    }
    // One patient, one sex.
    for v in &visits {
        if let Some(first) = visits
            .iter()
            .find(|w| w.patient.is_some() && w.patient == v.patient)
        {
            if first.sex != v.sex {
                return Err(csv_err(
                    v.line,
                    format!(
                        "field sex: {} here, but {} on line {} for the same patient",
                        v.sex, first.sex, first.line
                    ),
                ));
            }
        }
    }
    Ok(visits)
}

#[derive(Clone, Copy)]
enum Ages {
    Age(usize),
    Dates(usize, usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("visits.csv");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn both_layouts_read_with_paths_beside_the_csv() {
        let (dir, path) = write("patient,image,sex,age,note\np1,a.png,F,7y2m,x\np1,b.png,f,8y,\n");
        let v = read_visits(&path).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].image, dir.path().join("a.png"));
        assert_eq!((v[0].age.months, v[1].age.months), (86.0, 96.0));
        assert_eq!(v[1].patient.as_deref(), Some("p1"));
        assert_eq!(v[1].line, 3);
        let (_d, path) = write("image,sex,birth_date,exam_date\na.png,M,2019-01-10,2026-03-10\n");
        let v = read_visits(&path).unwrap();
        assert_eq!(
            (v[0].age.months, v[0].patient.clone(), v[0].sex),
            (86.0, None, Sex::Male)
        );
    }

    #[test]
    fn bad_rows_name_their_line_and_field_and_nothing_is_read() {
        let (_d, path) = write(
            "image,sex,birth_date,exam_date\n\
             a.png,M,2019-01-10,2026-03-10\n\
             b.png,X,2019-01-10,2026-03-10\n\
             c.png,F,2019-13-10,2026-03-10\n\
             d.png,F,2020-01-10,2019-03-10\n\
             ,F,2020-01-10,2021-03-10\n",
        );
        let e = read_visits(&path).unwrap_err().to_string();
        for want in [
            "4 bad row(s)",
            "line 3, field sex",
            "line 4, field birth_date",
            "line 5, field exam_date",
            "before the birth date",
            "line 6, field image",
        ] {
            assert!(e.contains(want), "{want} in {e}");
        }
        assert!(!e.contains("line 2"), "{e}");
        let (_d, path) = write("image,sex,age\na.png,M,7y14m\nb.png,M\n");
        let e = read_visits(&path).unwrap_err().to_string();
        assert!(e.contains("line 2, field age") && e.contains("0–11"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn bad_headers_and_mixed_sexes_are_refused() {
        let (_d, path) = write("image,age\na.png,7y\n");
        assert!(read_visits(&path)
            .unwrap_err()
            .to_string()
            .contains("image and sex"));
        let (_d, path) = write("image,sex,age,birth_date\na.png,M,7y,2019-01-01\n");
        assert!(read_visits(&path)
            .unwrap_err()
            .to_string()
            .contains("either an age"));
        let (_d, path) = write("patient,image,sex,age\np,a.png,M,7y\np,b.png,F,8y\n");
        let e = read_visits(&path).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("same patient"), "{e}");
        let (_d, path) = write("image,sex,age\n");
        assert!(read_visits(&path)
            .unwrap_err()
            .to_string()
            .contains("no visits"));
    }
}
