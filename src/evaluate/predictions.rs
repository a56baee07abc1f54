//! `predictions.csv`: one row per image, written by `bone-age evaluate` and read back by
//! `bone-age plot evaluation`. Age models: the prediction, its 95% interval and whether
//! it held; ensembles add the members' spread and each member's prediction.
use std::io::Write;
use std::path::Path;

use super::{Evaluation, Prediction};
use crate::error::{Error, Result};
use crate::model::Target;

/// Writes `id,male,boneage,predicted,abs_error,low,high,covered` (age; ensembles add
/// `spread` and one column per member) or `id,male,p_male` (sex).
pub fn write_predictions(eval: &Evaluation, path: &Path) -> Result<()> {
    crate::files::atomic_write(path, |tmp| {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?);
        let io = |e| Error::io(tmp, e);
        match eval.target {
            Target::Age => {
                let mut header = "id,male,boneage,predicted,abs_error,low,high,covered".to_string();
                if !eval.members.is_empty() {
                    header += ",spread";
                    for m in &eval.members {
                        header += &format!(",{}", m.name.replace(',', "_"));
                    }
                }
                writeln!(f, "{header}").map_err(io)?;
                for p in &eval.predictions {
                    let (truth, err) = p.boneage.map_or((String::new(), String::new()), |a| {
                        (a.to_string(), format!("{:.3}", (p.predicted - a).abs()))
                    });
                    let (low, high, covered) = match (p.interval, p.boneage) {
                        (Some([lo, hi]), Some(a)) => (
                            format!("{lo:.3}"),
                            format!("{hi:.3}"),
                            ((lo..=hi).contains(&a)).to_string(),
                        ),
                        (Some([lo, hi]), None) => {
                            (format!("{lo:.3}"), format!("{hi:.3}"), String::new())
                        }
                        _ => Default::default(),
                    };
                    write!(
                        f,
                        "{},{},{truth},{:.3},{err},{low},{high},{covered}",
                        p.id, p.male, p.predicted
                    )
                    .map_err(io)?;
                    if !eval.members.is_empty() {
                        write!(
                            f,
                            ",{}",
                            p.spread.map_or(String::new(), |s| format!("{s:.3}"))
                        )
                        .map_err(io)?;
                        for v in &p.members {
                            write!(f, ",{v:.3}").map_err(io)?;
                        }
                    }
                    writeln!(f).map_err(io)?;
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
        let boneage = if field(2).is_empty() {
            None
        } else {
            Some(num(2)?)
        };
        out.push(Prediction::new(
            num(0)? as i64,
            field(1).eq_ignore_ascii_case("true"),
            boneage,
            num(3)?,
        ));
    }
    Ok(out)
}
