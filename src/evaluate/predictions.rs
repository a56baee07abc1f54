//! `predictions.csv`: one row per image, written by `bone-age evaluate` and read back by
//! `bone-age plot evaluation`.
use std::io::Write;
use std::path::Path;

use super::{Evaluation, Prediction};
use crate::error::{Error, Result};
use crate::model::Target;

/// Writes `id,male,boneage,predicted,abs_error` (age) or `id,male,p_male` (sex).
pub fn write_predictions(eval: &Evaluation, path: &Path) -> Result<()> {
    crate::files::atomic_write(path, |tmp| {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?);
        let io = |e| Error::io(tmp, e);
        match eval.target {
            Target::Age => {
                writeln!(f, "id,male,boneage,predicted,abs_error").map_err(io)?;
                for p in &eval.predictions {
                    let (truth, err) = p.boneage.map_or((String::new(), String::new()), |a| {
                        (a.to_string(), format!("{:.3}", (p.predicted - a).abs()))
                    });
                    writeln!(f, "{},{},{truth},{:.3},{err}", p.id, p.male, p.predicted)
                        .map_err(io)?;
                }
            }
            Target::Sex => {
                writeln!(f, "id,male,p_male").map_err(io)?;
                for p in &eval.predictions {
                    writeln!(f, "{},{},{:.5}", p.id, p.male, p.predicted).map_err(io)?;
                }
            }
        }
        f.flush().map_err(io)
    })
}

/// Reads a `predictions.csv` written by [`write_predictions`] for an age model.
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| Error::Dataset {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let bad = |message: String| Error::Csv {
            path: path.to_path_buf(),
            line: i + 2,
            message,
        };
        let row = row.map_err(|e| bad(e.to_string()))?;
        let field = |k: usize| row.get(k).unwrap_or("").trim();
        if row.len() < 4 {
            return Err(bad(format!(
                "expected id,male,boneage,predicted[,abs_error] (an age model's predictions), got {} fields",
                row.len()
            )));
        }
        let num = |k: usize| {
            field(k)
                .parse::<f64>()
                .map_err(|_| bad(format!("column {}: {:?} is not a number", k + 1, field(k))))
        };
        out.push(Prediction {
            id: num(0)? as i64,
            male: field(1).eq_ignore_ascii_case("true"),
            boneage: if field(2).is_empty() {
                None
            } else {
                Some(num(2)?)
            },
            predicted: num(3)?,
        });
    }
    Ok(out)
}
