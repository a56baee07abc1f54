//! Epoch metrics: what one epoch of training measured, as `bone-age train` prints it
//! and as the run directory's `metrics.csv` holds it (read back by resume and plots).
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Seconds since the Unix epoch (TensorBoard's wall time).
pub fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The metrics file of a run directory.
pub const METRICS: &str = "metrics.csv";

/// Metrics of one epoch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Age models: validation mean absolute error in months.
    pub val_mae_months: Option<f64>,
    /// Sex models: validation accuracy.
    pub val_accuracy: Option<f64>,
    pub lr: f64,
    pub seconds: f64,
    /// Training images per second.
    pub images_per_s: f64,
    /// When the epoch ended, seconds since the Unix epoch (TensorBoard's wall time).
    #[serde(default)]
    pub wall_time: f64,
}

impl EpochMetrics {
    /// An epoch that just ended: its training loss, `validation` as [`crate::epoch::validate`]
    /// returns it (loss, MAE, accuracy), the learning rate, its time and training speed.
    pub fn new(
        epoch: usize,
        train_loss: f64,
        validation: (f64, Option<f64>, Option<f64>),
        lr: f64,
        seconds: f64,
        images_per_s: f64,
    ) -> Self {
        let (val_loss, val_mae_months, val_accuracy) = validation;
        Self {
            epoch,
            train_loss,
            val_loss,
            val_mae_months,
            val_accuracy,
            lr,
            seconds,
            images_per_s,
            wall_time: wall_time(),
        }
    }
}

impl std::fmt::Display for EpochMetrics {
    /// One line per epoch, as `bone-age train` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let score = match (self.val_mae_months, self.val_accuracy) {
            (Some(mae), _) => format!("val MAE {mae:6.2} months"),
            (_, Some(acc)) => format!("val accuracy {:5.1}%", acc * 100.0),
            _ => String::new(),
        };
        write!(
            f,
            "epoch {:>3}  train loss {:.4}  val loss {:.4}  {score}  {:.1} s  {:.1} img/s",
            self.epoch, self.train_loss, self.val_loss, self.seconds, self.images_per_s
        )
    }
}

const METRICS_HEADER: &str =
    "epoch,train_loss,val_loss,val_mae_months,val_accuracy,lr,seconds,images_per_s,wall_time";

/// Writes `history` as `metrics.csv` to `path`, one row per epoch.
pub fn write_metrics(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    let io = |e| Error::io(path, e);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    writeln!(f, "{METRICS_HEADER}").map_err(io)?;
    for m in history {
        writeln!(
            f,
            "{},{},{},{},{},{},{},{},{}",
            m.epoch,
            m.train_loss,
            m.val_loss,
            opt(m.val_mae_months),
            opt(m.val_accuracy),
            m.lr,
            m.seconds,
            m.images_per_s,
            m.wall_time
        )
        .map_err(io)?;
    }
    f.flush().map_err(io)
}

/// Reads `metrics.csv` from a run directory (empty when absent).
pub fn read_metrics(run_dir: &Path) -> Result<Vec<EpochMetrics>> {
    let path = run_dir.join(METRICS);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut reader = csv::Reader::from_path(&path).map_err(|e| Error::Dataset {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| Error::Dataset {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let num = |k: usize| row.get(k).and_then(|v| v.parse::<f64>().ok());
        let epoch = num(0).filter(|e| *e >= 1.0).ok_or_else(|| Error::Csv {
            path: path.clone(),
            line: i + 2,
            message: format!("epoch {:?} is not a number >= 1", row.get(0).unwrap_or("")),
        })?;
        out.push(EpochMetrics {
            epoch: epoch as usize,
            train_loss: num(1).unwrap_or(f64::NAN),
            val_loss: num(2).unwrap_or(f64::NAN),
            val_mae_months: num(3),
            val_accuracy: num(4),
            lr: num(5).unwrap_or(f64::NAN),
            seconds: num(6).unwrap_or(f64::NAN),
            images_per_s: num(7).unwrap_or(f64::NAN),
            wall_time: num(8).unwrap_or(0.0),
        });
    }
    Ok(out)
}
