//! `bone-age data summary`: what a dataset holds: layout, counts, missing images, the
//! bone-age distribution by sex, and for DICOM images how their grey levels will be read
//! (counts per photometric interpretation, window source and transfer syntax, from the
//! headers alone).
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use rayon::prelude::*;

use serde::Serialize;

use crate::dataset::{self, CsvFormat, Dataset, Layout};
use crate::error::Result;

/// Distribution of bone ages (months) in one group.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AgeStats {
    pub count: usize,
    pub mean: f64,
    pub sd: f64,
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl AgeStats {
    pub fn of(ages: &[f64]) -> Option<AgeStats> {
        if ages.is_empty() {
            return None;
        }
        let n = ages.len() as f64;
        let mean = ages.iter().sum::<f64>() / n;
        let sd = (ages.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
        let mut sorted = ages.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        } else {
            sorted[mid]
        };
        Some(AgeStats {
            count: ages.len(),
            mean,
            sd,
            min: sorted[0],
            median,
            max: sorted[sorted.len() - 1],
        })
    }
}

/// Everything `data summary` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub layout: Option<Layout>,
    pub format: CsvFormat,
    pub csv: PathBuf,
    pub images_dir: PathBuf,
    pub rows_in_csv: usize,
    /// Rows with an image (the rows every later step uses).
    pub rows_with_image: usize,
    pub missing_images: usize,
    /// The first ids whose image is missing.
    pub missing_ids: Vec<i64>,
    pub unlisted_images: usize,
    pub male: usize,
    pub female: usize,
    /// Present for labelled sets.
    pub age_all: Option<AgeStats>,
    pub age_male: Option<AgeStats>,
    pub age_female: Option<AgeStats>,
    /// DICOM images only (absent when there are none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dicom: Option<DicomCounts>,
}

/// How a dataset's DICOM images will be read, from their headers.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct DicomCounts {
    pub files: usize,
    pub photometric: BTreeMap<String, usize>,
    /// `window` (Window Center/Width), `voi-lut`, `percentile` (neither) or `colour`.
    pub window_source: BTreeMap<String, usize>,
    pub transfer_syntax: BTreeMap<String, usize>,
    pub multi_frame: usize,
    /// Headers that could not be read (they will be refused), with the reason.
    pub unreadable: Vec<String>,
}

impl DicomCounts {
    /// Reads the header of every DICOM file among `paths`; `None` when there is none.
    pub fn of(paths: &[PathBuf]) -> Option<DicomCounts> {
        let headers: Vec<_> = paths
            .par_iter()
            .filter(|p| crate::preprocess::dicom::is_dicom(p))
            .map(|p| crate::preprocess::dicom::header(p))
            .collect();
        if headers.is_empty() {
            return None;
        }
        let mut c = DicomCounts {
            files: headers.len(),
            ..Default::default()
        };
        for h in headers {
            match h {
                Ok(info) => {
                    *c.photometric.entry(info.photometric).or_default() += 1;
                    *c.window_source
                        .entry(info.window_source.name().into())
                        .or_default() += 1;
                    *c.transfer_syntax
                        .entry(info.transfer_syntax_name)
                        .or_default() += 1;
                    c.multi_frame += (info.frames > 1) as usize;
                }
                Err(e) => c.unreadable.push(e.to_string()),
            }
        }
        Some(c)
    }
}

impl Summary {
    pub fn of(ds: &Dataset, layout: Option<Layout>) -> Result<Summary> {
        let males = dataset::males(&ds.frame)?;
        let ages = if ds.is_labelled() {
            dataset::ages(&ds.frame)?
        } else {
            Vec::new()
        };
        let group = |want: Option<bool>| {
            let a: Vec<f64> = ages
                .iter()
                .zip(&males)
                .filter(|(_, &m)| want.is_none_or(|w| w == m))
                .map(|(a, _)| *a)
                .collect();
            AgeStats::of(&a)
        };
        Ok(Summary {
            layout,
            format: ds.format,
            csv: ds.csv.clone(),
            images_dir: ds.images_dir.clone(),
            rows_in_csv: ds.report.rows_in_csv,
            rows_with_image: ds.frame.height(),
            missing_images: ds.report.missing_images.len(),
            missing_ids: ds.report.missing_images.iter().take(10).copied().collect(),
            unlisted_images: ds.report.unlisted_images.len(),
            male: males.iter().filter(|&&m| m).count(),
            female: males.iter().filter(|&&m| !m).count(),
            age_all: group(None),
            age_male: group(Some(true)),
            age_female: group(Some(false)),
            dicom: DicomCounts::of(&dataset::paths(&ds.frame)?),
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layout = self
            .layout
            .map_or("(labels + images)".to_string(), |l| l.to_string());
        writeln!(f, "layout          {layout} ({:?})", self.format)?;
        writeln!(f, "labels          {}", self.csv.display())?;
        writeln!(f, "images          {}", self.images_dir.display())?;
        writeln!(
            f,
            "rows            {} in CSV, {} with an image",
            self.rows_in_csv, self.rows_with_image
        )?;
        write!(f, "missing images  {}", self.missing_images)?;
        if !self.missing_ids.is_empty() {
            write!(f, " (first ids: {:?})", self.missing_ids)?;
        }
        writeln!(f)?;
        writeln!(f, "unlisted images {}", self.unlisted_images)?;
        writeln!(
            f,
            "sex             {} male, {} female",
            self.male, self.female
        )?;
        if let Some(d) = &self.dicom {
            let list = |m: &BTreeMap<String, usize>| {
                m.iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            writeln!(
                f,
                "DICOM           {} files: {}",
                d.files,
                list(&d.photometric)
            )?;
            writeln!(f, "  window        {}", list(&d.window_source))?;
            writeln!(f, "  encoding      {}", list(&d.transfer_syntax))?;
            if d.multi_frame > 0 {
                writeln!(
                    f,
                    "  multi-frame   {} (the first frame is read)",
                    d.multi_frame
                )?;
            }
            for e in &d.unreadable {
                writeln!(f, "  unreadable    {e}")?;
            }
        }
        if self.age_all.is_none() {
            return write!(f, "bone age        (unlabelled)");
        }
        writeln!(
            f,
            "bone age (months)  {:>6} {:>7} {:>6} {:>6} {:>7} {:>6}",
            "n", "mean", "sd", "min", "median", "max"
        )?;
        for (name, s) in [
            ("all", &self.age_all),
            ("male", &self.age_male),
            ("female", &self.age_female),
        ] {
            if let Some(s) = s {
                writeln!(
                    f,
                    "  {name:<16} {:>6} {:>7.1} {:>6.1} {:>6.1} {:>7.1} {:>6.1}",
                    s.count, s.mean, s.sd, s.min, s.median, s.max
                )?;
            }
        }
        let years = |m: f64| m / 12.0;
        if let Some(s) = &self.age_all {
            write!(
                f,
                "  (mean {:.1} years, range {:.1}–{:.1} years)",
                years(s.mean),
                years(s.min),
                years(s.max)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_stats_match_hand_computation() {
        let s = AgeStats::of(&[10.0, 20.0, 30.0, 40.0]).unwrap();
        assert_eq!(
            (s.count, s.mean, s.min, s.median, s.max),
            (4, 25.0, 10.0, 25.0, 40.0)
        );
        assert!((s.sd - 12.909_944).abs() < 1e-5);
        assert!(AgeStats::of(&[]).is_none());
    }
}
