//! Annotation frames: the recipe, Kaggle and RSNA-test CSV layouts, loaded into a
//! polars DataFrame `id (i64) | boneage (f64 months, labelled sets only) | male (bool) | path (str)`.
//!
//! Rows are validated (the error names file, line and value); rows whose image is
//! missing and images with no row are counted in a [`LoadReport`], never dropped silently.
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod annotations;

use annotations::{read_rows, Row};
pub use annotations::{CsvFormat, AGE_RANGE_MONTHS};

/// Which dataset layout to read (`[data]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// `recipe` or `kaggle`; unset = detected from the files present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
}

/// Which split of a dataset directory to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

/// On-disk layouts of a dataset directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `<root>/train.csv` + `<root>/train/<id>.png` (and `test.csv` + `test/`).
    Recipe,
    /// Kaggle `kmader/rsna-bone-age`: `boneage-training-dataset.csv` +
    /// `boneage-training-dataset/boneage-training-dataset/<id>.png` (and the test set).
    Kaggle,
}

impl Layout {
    /// The CSV and image directory of `split` under `root` (the first that exists
    /// for the Kaggle layout, which is found nested and flat).
    pub fn paths(self, root: &Path, split: Split) -> (PathBuf, PathBuf) {
        let name = match (self, split) {
            (Layout::Recipe, Split::Train) => "train",
            (Layout::Recipe, Split::Test) => "test",
            (Layout::Kaggle, Split::Train) => "boneage-training-dataset",
            (Layout::Kaggle, Split::Test) => "boneage-test-dataset",
        };
        let csv = root.join(format!("{name}.csv"));
        let images = match self {
            Layout::Recipe => root.join(name),
            Layout::Kaggle => {
                let nested = root.join(name).join(name);
                if nested.is_dir() {
                    nested
                } else {
                    root.join(name)
                }
            }
        };
        (csv, images)
    }

    /// The layout whose CSV for `split` exists under `root`.
    pub fn detect(root: &Path, split: Split) -> Result<Layout> {
        for layout in [Layout::Recipe, Layout::Kaggle] {
            if layout.paths(root, split).0.is_file() {
                return Ok(layout);
            }
        }
        Err(Error::Dataset {
            path: root.to_path_buf(),
            message: format!(
                "no dataset found: expected {} (recipe layout) or {} (Kaggle layout)",
                Layout::Recipe.paths(root, split).0.display(),
                Layout::Kaggle.paths(root, split).0.display()
            ),
        })
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Recipe => "recipe",
            Layout::Kaggle => "kaggle",
        })
    }
}

/// What loading found besides the rows it kept.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadReport {
    pub rows_in_csv: usize,
    /// Ids of rows whose image file does not exist (left out of the frame).
    pub missing_images: Vec<i64>,
    /// Image files in the image directory that no row names.
    pub unlisted_images: Vec<PathBuf>,
}

/// A loaded annotation frame with where it came from.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub csv: PathBuf,
    pub images_dir: PathBuf,
    pub format: CsvFormat,
    /// `id | boneage? | male | path`, rows in file order.
    pub frame: DataFrame,
    pub report: LoadReport,
}

impl Dataset {
    /// Loads `split` of a dataset directory; the layout is detected unless given.
    pub fn from_dir(
        root: &Path,
        split: Split,
        layout: Option<Layout>,
    ) -> Result<(Layout, Dataset)> {
        let layout = match layout {
            Some(l) => l,
            None => Layout::detect(root, split)?,
        };
        let (csv, images) = layout.paths(root, split);
        Ok((layout, Dataset::from_csv(&csv, &images)?))
    }

    /// Loads any of the three CSV formats with a folder of `<id>.png` images.
    pub fn from_csv(csv: &Path, images_dir: &Path) -> Result<Dataset> {
        let (format, rows) = read_rows(csv)?;
        let images = list_images(images_dir)?;
        let mut report = LoadReport {
            rows_in_csv: rows.len(),
            ..Default::default()
        };
        let listed: HashSet<i64> = rows.iter().map(|r| r.id).collect();
        let mut unlisted: Vec<PathBuf> = images
            .iter()
            .filter(|(id, _)| !listed.contains(id))
            .map(|(_, p)| p.clone())
            .collect();
        unlisted.sort();
        report.unlisted_images = unlisted;
        let kept: Vec<(&Row, &PathBuf)> = rows
            .iter()
            .filter_map(|r| match images.get(&r.id) {
                Some(p) => Some((r, p)),
                None => {
                    report.missing_images.push(r.id);
                    None
                }
            })
            .collect();
        if !report.missing_images.is_empty() {
            tracing::warn!(
                csv = %csv.display(),
                "{} row(s) have no image in {} and are left out (first ids: {:?})",
                report.missing_images.len(),
                images_dir.display(),
                &report.missing_images[..report.missing_images.len().min(10)]
            );
        }
        if !report.unlisted_images.is_empty() {
            tracing::warn!(
                "{} image(s) in {} have no row in {}",
                report.unlisted_images.len(),
                images_dir.display(),
                csv.display()
            );
        }
        let mut columns = vec![Column::new(
            "id".into(),
            kept.iter().map(|(r, _)| r.id).collect::<Vec<i64>>(),
        )];
        if !matches!(format, CsvFormat::CaseIdSex | CsvFormat::IdMale) {
            let ages: Vec<f64> = kept
                .iter()
                .map(|(r, _)| r.boneage.unwrap_or(f64::NAN))
                .collect();
            columns.push(Column::new("boneage".into(), ages));
        }
        columns.push(Column::new(
            "male".into(),
            kept.iter().map(|(r, _)| r.male).collect::<Vec<bool>>(),
        ));
        columns.push(Column::new(
            "path".into(),
            kept.iter()
                .map(|(_, p)| p.to_string_lossy().into_owned())
                .collect::<Vec<String>>(),
        ));
        let frame = DataFrame::new(kept.len(), columns).map_err(|e| Error::Dataset {
            path: csv.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Dataset {
            csv: csv.to_path_buf(),
            images_dir: images_dir.to_path_buf(),
            format,
            frame,
            report,
        })
    }

    pub fn is_labelled(&self) -> bool {
        is_labelled(&self.frame)
    }
}

/// Whether a frame has bone ages.
pub fn is_labelled(frame: &DataFrame) -> bool {
    frame.column("boneage").is_ok()
}

/// An error unless `frame` has bone ages: `what` says what needed them, `source` names the data.
pub fn require_labels(frame: &DataFrame, source: &Path, what: &str) -> Result<()> {
    if is_labelled(frame) {
        return Ok(());
    }
    Err(Error::Dataset {
        path: source.to_path_buf(),
        message: format!(
            "no bone-age column (`boneage` or `Ground truth bone age (months)`): {what} needs \
             labelled radiographs; `bone-age predict` reads unlabelled ones"
        ),
    })
}

/// `<id>.png` (or .jpg/.jpeg, .dcm/.dicom, or `<id>` alone holding DICOM) files in `dir`, by id.
fn list_images(dir: &Path) -> Result<HashMap<i64, PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut images = HashMap::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let image = match ext.as_deref() {
            Some("png" | "jpg" | "jpeg" | "dcm" | "dicom") => true,
            None => crate::preprocess::dicom::is_dicom(&path),
            _ => false,
        };
        if !image {
            continue;
        }
        if let Some(id) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse().ok())
        {
            images.insert(id, path);
        }
    }
    Ok(images)
}

/// The `i64` ids of a frame.
pub fn ids(frame: &DataFrame) -> Result<Vec<i64>> {
    column_values(frame, "id", |c| Ok(c.i64()?.into_no_null_iter().collect()))
}

/// Bone ages (months) of a labelled frame.
pub fn ages(frame: &DataFrame) -> Result<Vec<f64>> {
    column_values(frame, "boneage", |c| {
        Ok(c.f64()?.into_no_null_iter().collect())
    })
}

/// Sex of each row (true = male).
pub fn males(frame: &DataFrame) -> Result<Vec<bool>> {
    column_values(frame, "male", |c| {
        Ok(c.bool()?.iter().map(|v| v.unwrap_or(false)).collect())
    })
}

/// Image paths of each row.
pub fn paths(frame: &DataFrame) -> Result<Vec<PathBuf>> {
    column_values(frame, "path", |c| {
        Ok(c.str()?
            .iter()
            .map(|v| PathBuf::from(v.unwrap_or("")))
            .collect())
    })
}

fn column_values<T>(
    frame: &DataFrame,
    name: &str,
    get: impl Fn(&Series) -> PolarsResult<Vec<T>>,
) -> Result<Vec<T>> {
    let err = |e: PolarsError| Error::Frame(format!("column `{name}`: {e}"));
    let column = frame.column(name).map_err(err)?;
    get(column.as_materialized_series()).map_err(err)
}
