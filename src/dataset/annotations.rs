//! The annotation CSVs: their column dialects, recognised from the header, and their rows
//! validated one by one (an error names the file, line and value).
use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

/// Column dialects of the annotation CSVs, recognised from the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CsvFormat {
    /// `id,boneage,male` (recipe and Kaggle training; `male` True/False).
    IdBoneageMale,
    /// `id,male` without bone ages: unlabelled, for prediction only.
    IdMale,
    /// `Case ID,Sex` (Kaggle test; Sex M/F), unlabelled.
    CaseIdSex,
    /// `Case ID,Sex,Ground truth bone age (months)` (official RSNA test labels).
    RsnaGroundTruth,
}

/// One validated CSV row.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Row {
    pub id: i64,
    pub boneage: Option<f64>,
    pub male: bool,
}

/// Bone ages outside this range (months) are errors, not data.
pub const AGE_RANGE_MONTHS: (f64, f64) = (0.0, 300.0);

pub(super) fn read_rows(csv_path: &Path) -> Result<(CsvFormat, Vec<Row>)> {
    let bytes = std::fs::read(csv_path).map_err(|e| Error::io(csv_path, e))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| Error::Dataset {
        path: csv_path.to_path_buf(),
        message: format!("not UTF-8 text: {e}"),
    })?;
    // Real copies come with a UTF-8 BOM and old-Mac CR-only line endings.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let bad = |line: usize, message: String| Error::Csv {
        path: csv_path.to_path_buf(),
        line,
        message,
    };
    // The csv crate's default terminator accepts \r\n, \n and a lone \r.
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| bad(1, e.to_string()))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h.as_str()));
    let (id_col, age_col, sex_col) = (
        col(&["id", "case id"]),
        col(&[
            "boneage",
            "ground truth bone age (months)",
            "bone age (months)",
        ]),
        col(&["male", "sex"]),
    );
    let (Some(id_col), Some(sex_col)) = (id_col, sex_col) else {
        return Err(bad(
            1,
            format!(
                "header {headers:?}: need an id column (`id` or `Case ID`) and `male` or `Sex`"
            ),
        ));
    };
    let format = match (headers[id_col].as_str(), age_col) {
        ("id", Some(_)) => CsvFormat::IdBoneageMale,
        ("id", None) => CsvFormat::IdMale,
        (_, Some(_)) => CsvFormat::RsnaGroundTruth,
        (_, None) => CsvFormat::CaseIdSex,
    };
    let mut rows = Vec::new();
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            bad(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(str::is_empty) {
            continue;
        }
        let field = |i: usize| record.get(i).unwrap_or("");
        let id: i64 = field(id_col)
            .parse()
            .map_err(|_| bad(line, format!("id {:?} is not an integer", field(id_col))))?;
        if let Some(first) = seen.insert(id, line) {
            return Err(bad(
                line,
                format!("duplicate id {id} (first on line {first})"),
            ));
        }
        let boneage = match age_col {
            None => None,
            Some(c) => {
                let raw = field(c);
                let age: f64 = raw
                    .parse()
                    .map_err(|_| bad(line, format!("bone age {raw:?} is not a number")))?;
                let (lo, hi) = AGE_RANGE_MONTHS;
                if !(lo..=hi).contains(&age) {
                    return Err(bad(
                        line,
                        format!("bone age {raw} months is outside {lo}–{hi}"),
                    ));
                }
                Some(age)
            }
        };
        let raw = field(sex_col);
        let male = match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "m" | "male" => true,
            "false" | "0" | "f" | "female" => false,
            _ => {
                return Err(bad(
                    line,
                    format!("sex {raw:?} is not one of True/False/M/F"),
                ))
            }
        };
        rows.push(Row { id, boneage, male });
    }
    Ok((format, rows))
}
