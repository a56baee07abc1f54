//! DICOM radiographs (cargo feature `dicom`, the dicom-rs crates): recognised by content,
//! opened with dicom-object, the first frame decoded with dicom-pixeldata in every
//! transfer syntax it decodes in pure Rust, then to 8-bit grey ([`grey`]) with the file's
//! rescale, window and photometric interpretation. The readout's tags ([`tags`]) come
//! with it; patient names and IDs are never read.
use std::path::Path;

use chrono::NaiveDate;
use image::GrayImage;
use serde::{Deserialize, Serialize};

use crate::error::Result;

#[cfg(feature = "dicom")]
pub mod grey;
#[cfg(feature = "dicom")]
mod read;
#[cfg(feature = "dicom")]
mod tags;

#[cfg(feature = "dicom")]
pub use grey::Voi;

/// The percentiles of the rescaled values that bound the window of a file that gives
/// none: the full range (min–max), as viewers and dicom-pixeldata show such files. The
/// model's own normalisation (`preprocess.normalize`) comes after and clips as it was
/// trained to. Clipping here as well cost agreement with the PNG: with the 0.5th–99.5th
/// (or even the 0.01st–99.99th) a 16-bit copy of a low-contrast radiograph read up to
/// 4.7 (4.3) months away from its PNG with the rsna-128 model; see docs/dicom.md.
pub const PERCENTILE_WINDOW: [f64; 2] = [0.0, 100.0];

/// Where the VOI transform came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowSource {
    /// Window Center/Width (the first pair when several are given).
    Window,
    /// The VOI LUT Sequence (first LUT).
    VoiLut,
    /// Neither was given: [`PERCENTILE_WINDOW`] of the rescaled values.
    Percentile,
    /// Colour files: luminance, no window.
    Colour,
}

impl WindowSource {
    pub fn name(self) -> &'static str {
        match self {
            WindowSource::Window => "window",
            WindowSource::VoiLut => "voi-lut",
            WindowSource::Percentile => "percentile",
            WindowSource::Colour => "colour",
        }
    }
}

/// What was read from a DICOM file besides its pixels, and every choice made on the way.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DicomInfo {
    pub transfer_syntax: String,
    pub transfer_syntax_name: String,
    /// As the file gives it (MONOCHROME1, MONOCHROME2, RGB, …).
    pub photometric: String,
    pub bits_stored: u16,
    pub frames: u32,
    pub rows: u32,
    pub columns: u32,
    /// How the grey levels were windowed (colour files: by luminance).
    pub window_source: WindowSource,
    pub rescale: [f64; 2],
    pub meta: DicomMeta,
    /// Warnings about the file: several frames, the body part, the laterality.
    pub warnings: Vec<String>,
}

/// The readout's tags, as the file gives them (absent, empty or unreadable = `None`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DicomMeta {
    /// PatientSex: `M`, `F` or `O` (other).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sex: Option<String>,
    /// PatientBirthDate. Not serialised: outputs carry the age reckoned from it.
    #[serde(skip)]
    pub birth_date: Option<NaiveDate>,
    /// StudyDate, else AcquisitionDate, else ContentDate. Not serialised.
    #[serde(skip)]
    pub exam_date: Option<NaiveDate>,
    /// Which tag `exam_date` came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exam_date_tag: Option<&'static str>,
    /// BodyPartExamined, upper case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_part: Option<String>,
    /// ImageLaterality, else Laterality: `L` or `R`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub laterality: Option<String>,
    /// Tags that were present but unreadable (a malformed date, an unknown sex code).
    pub problems: Vec<String>,
}

impl DicomMeta {
    /// Warnings about what the image shows: a body part other than the hand, a right hand
    /// (the reference and the model are for the left).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = self.problems.clone();
        if let Some(part) = &self.body_part {
            if part != "HAND" {
                w.push(format!(
                    "BodyPartExamined is {part}, not HAND: bone age is read from a hand radiograph"
                ));
            }
        }
        if self.laterality.as_deref() == Some("R") {
            w.push(
                "laterality R: a right hand; the model and the Greulich–Pyle reference are for \
                 the left hand (flip the image, or read it with care)"
                    .into(),
            );
        }
        w
    }
}

/// Whether `path` holds DICOM: `DICM` after the 128-byte preamble (or at the start, for a
/// file written without one), or a `.dcm`/`.dicom` name.
pub fn is_dicom(path: &Path) -> bool {
    use std::io::Read;
    let by_name = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm") || e.eq_ignore_ascii_case("dicom"));
    if by_name {
        return true;
    }
    let mut head = [0u8; 132];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    (n == 132 && &head[128..132] == b"DICM") || (n >= 4 && &head[..4] == b"DICM")
}

/// `path`'s header without its pixel data: size, frames, photometric interpretation,
/// window source and the readout's tags.
pub fn header(path: &Path) -> Result<DicomInfo> {
    #[cfg(feature = "dicom")]
    return read::header(path);
    #[cfg(not(feature = "dicom"))]
    Err(not_built(path))
}

/// Reads `path`'s first frame as 8-bit grey (bone bright) with what the file says,
/// refusing images over `max_pixels` before anything is decoded.
pub fn read(path: &Path, max_pixels: u64) -> Result<(GrayImage, DicomInfo)> {
    #[cfg(feature = "dicom")]
    return read::read(path, max_pixels);
    #[cfg(not(feature = "dicom"))]
    {
        let _ = max_pixels;
        Err(not_built(path))
    }
}

#[cfg(not(feature = "dicom"))]
fn not_built(path: &Path) -> crate::error::Error {
    crate::error::Error::Image {
        path: path.to_path_buf(),
        message: "a DICOM file, but bone-age was built without its `dicom` feature \
                  (rebuild with default features, or `--features dicom`)"
            .into(),
    }
}
