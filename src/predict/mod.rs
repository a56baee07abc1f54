//! Reading single radiographs: the checkpoint's whole preprocessing, ending at its input
//! size whatever the image's size; checks that the image can show a hand at all (size,
//! contrast, where the crop falls); a bone age kept to the range the model learnt,
//! flagged when the network's output fell outside it; optional test-time augmentation;
//! and the model's 95% interval around it. [`crate::ensemble`] reads with several models.
use std::path::{Path, PathBuf};

use image::GrayImage;
use serde::Serialize;
use tch::{Kind, Tensor};

use crate::augment;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::model::Target;
use crate::preprocess::dicom::DicomInfo;
use crate::preprocess::{percentile, Decoded, HandBox, Preprocess};

mod passes;

pub use crate::model::AGE_RANGE_MONTHS;
pub use crate::readout::{years_months, MemberValue};
pub use passes::{combine, envelope, member_interval, passes, sd, MemberPasses};

/// Images with a shorter side than this cannot show a hand's bones.
pub const MIN_SIDE: u32 = 64;
/// Images whose 1st–99th percentile grey levels span less than this have no contrast.
pub const MIN_CONTRAST: u8 = 16;

/// One radiograph's prediction.
#[derive(Clone, Debug, Serialize)]
pub struct Reading {
    pub path: PathBuf,
    pub target: Target,
    /// Bone age in months, within [`AGE_RANGE_MONTHS`] (age model), or P(male) (sex model).
    pub value: f64,
    /// The network's output in the same units (recalibrated when the checkpoint carries a
    /// calibration), before it was kept to the range.
    pub raw: f64,
    /// Whether the checkpoint's linear recalibration was applied.
    pub calibrated: bool,
    /// Whether `raw` was outside the range and `value` is its nearest end.
    pub clamped: bool,
    /// Why this reading may not be trustworthy (empty when nothing looked wrong).
    pub warnings: Vec<String>,
    /// How a DICOM file was read (transfer syntax, photometric interpretation, window
    /// source) and its readout tags; never a name or an ID. Absent for PNG and JPEG.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dicom: Option<DicomInfo>,
    /// The model's 95% interval for the bone age, months (age models with residuals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<[f64; 2]>,
    /// How the interval was made, or why there is none.
    pub interval_source: String,
    /// Ensembles: each member's value (its passes' mean), in member order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberValue>,
    /// Ensembles: the standard deviation of the members' values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<f64>,
    /// Augmented passes averaged with the plain one (0 = none).
    pub tta: usize,
    /// With TTA: the standard deviation of the passes, averaged over the members.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tta_spread: Option<f64>,
}

impl std::fmt::Display for Reading {
    /// `path<TAB>142.0 months<TAB>11 y 10 m`, or `path<TAB>P(male) = 0.930`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.target {
            Target::Age => {
                write!(
                    f,
                    "{}\t{:.1} months\t{}",
                    self.path.display(),
                    self.value,
                    years_months(self.value)
                )?;
                if let Some([lo, hi]) = self.interval {
                    write!(f, "\t95% {lo:.1}–{hi:.1}")?;
                }
                if let Some(sd) = self.spread {
                    let values: Vec<String> = self
                        .members
                        .iter()
                        .map(|m| format!("{:.1}", m.value))
                        .collect();
                    write!(f, "\tmembers {} (SD {sd:.1})", values.join(", "))?;
                }
                if self.clamped {
                    write!(
                        f,
                        "\t(network output {:.1} months, outside 0–228)",
                        self.raw
                    )?;
                }
                Ok(())
            }
            Target::Sex => write!(f, "{}\tP(male) = {:.3}", self.path.display(), self.value),
        }
    }
}

/// A decoded radiograph and what the network sees of it.
#[derive(Clone, Debug)]
pub struct Radiograph {
    pub path: PathBuf,
    /// The file's grey levels.
    pub image: GrayImage,
    /// The checkpoint's preprocessing of it, cropped to the network's input size.
    pub input: GrayImage,
    /// The same with the augmentation margin around it (what test-time augmentation samples).
    pub cached: GrayImage,
    /// Reasons the image may not show a hand the model can read ([`image_warnings`]), and
    /// the DICOM file's own warnings (several frames, body part, laterality).
    pub warnings: Vec<String>,
    /// What the DICOM header said (`None` for PNG and JPEG).
    pub dicom: Option<DicomInfo>,
    /// The hand's box in `image`, when the preprocessing cropped to it.
    pub hand: Option<HandBox>,
}

impl Radiograph {
    /// Decodes `path` and runs the checkpoint's preprocessing on it.
    pub fn load(ckpt: &Checkpoint, path: &Path) -> Result<Radiograph> {
        let pre = ckpt.preprocess()?;
        let Decoded { image, dicom } = crate::preprocess::decode(path, pre.max_pixels)?;
        let mut warnings = dicom.as_ref().map_or(Vec::new(), |d| d.warnings.clone());
        let prepared = pre.prepare(path, image.clone(), dicom.is_some())?;
        warnings.extend(prepared.warnings);
        warnings.extend(image_warnings(&prepared.image, &pre));
        let cached = pre.apply(&prepared.image).map_err(|e| Error::Image {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let [h, w] = [cached.height() as i64, cached.width() as i64];
        let raw = Tensor::from_data_size(cached.as_raw(), &[1, 1, h, w], Kind::Uint8);
        let out_hw = [
            ckpt.meta.input_shape[1] as usize,
            ckpt.meta.input_shape[2] as usize,
        ];
        let crop = augment::center_window(&raw, out_hw).contiguous(); // [1, 1, H, W] u8
        let input = GrayImage::from_raw(
            out_hw[1] as u32,
            out_hw[0] as u32,
            Vec::<u8>::try_from(crop.flatten(0, -1))?,
        )
        .ok_or_else(|| Error::Image {
            path: path.to_path_buf(),
            message: "the network's input view has the wrong size".into(),
        })?;
        Ok(Radiograph {
            path: path.to_path_buf(),
            image,
            input,
            cached,
            warnings,
            dicom,
            hand: prepared.hand,
        })
    }
}

/// Predicts one radiograph file. `male` is required when the model takes sex as an input.
pub fn predict_file(ckpt: &Checkpoint, path: &Path, male: Option<bool>) -> Result<Reading> {
    predict_radiograph(ckpt, &Radiograph::load(ckpt, path)?, male)
}

/// Predicts a loaded radiograph (see [`predict_file`]), without test-time augmentation.
pub fn predict_radiograph(
    ckpt: &Checkpoint,
    radiograph: &Radiograph,
    male: Option<bool>,
) -> Result<Reading> {
    predict_with(ckpt, radiograph, male, 0)
}

/// Predicts a loaded radiograph, averaging `tta` augmented passes with the plain one.
pub fn predict_with(
    ckpt: &Checkpoint,
    radiograph: &Radiograph,
    male: Option<bool>,
    tta: usize,
) -> Result<Reading> {
    let values = passes(ckpt, radiograph, male, tta)?;
    let member = MemberPasses {
        name: ckpt.path.display().to_string(),
        values,
        interval: ckpt
            .meta
            .interval_for(ckpt.meta.calibration.is_some())
            .copied(),
    };
    Ok(combine(radiograph, ckpt, &[member], None, tta))
}

/// The explanation map of `ckpt` on a loaded radiograph's input view.
pub fn explain(
    ckpt: &Checkpoint,
    radiograph: &Radiograph,
    male: Option<bool>,
    cfg: &crate::explain::ExplainConfig,
) -> Result<crate::explain::Explanation> {
    crate::explain::explain_model(
        &ckpt.model,
        ckpt.meta.calibration,
        ckpt.vs.device(),
        &radiograph.path,
        &radiograph.input,
        male,
        cfg,
    )
}

/// Reasons an image is unlikely to show a hand the model can read: too small, no
/// contrast, the model's crop mostly outside it, or a whole-image resize that distorts it.
pub fn image_warnings(img: &GrayImage, pre: &Preprocess) -> Vec<String> {
    let (w, h) = img.dimensions();
    let mut warnings = Vec::new();
    if w.min(h) < MIN_SIDE {
        warnings.push(format!(
            "the image is only {w}×{h} pixels, too small to show a hand's bones; the reading is unreliable"
        ));
    }
    let hist = crate::preprocess::histogram(img.iter().copied());
    let (p1, p99) = (percentile(&hist, 1.0), percentile(&hist, 99.0));
    if p99.saturating_sub(p1) < MIN_CONTRAST {
        warnings.push(format!(
            "almost no contrast (grey levels {p1}–{p99} hold 98% of the pixels): a blank or \
             saturated image, not a hand radiograph; the reading is unreliable"
        ));
    }
    if pre.fit.is_none() && pre.stretch.is_none() && pre.crop_hw().is_some() {
        let [top, left, ch, cw] = pre.regions([h, w]).crop;
        let overlap =
            |a: f64, len: f64, size: u32| ((a + len).min(size as f64) - a.max(0.0)).max(0.0);
        let inside = overlap(top, ch, h) * overlap(left, cw, w) / (ch * cw);
        if inside < 0.8 {
            warnings.push(format!(
                "{:.0}% of this model's {ch:.0}×{cw:.0} crop lies outside this {h}×{w} image: it reads \
                 registered 2080×1600 hands (a model trained with preprocess.fit reads raw radiographs)",
                (1.0 - inside) * 100.0
            ));
        }
    }
    if let Some([sh, sw]) = pre.stretch {
        let (a, b) = (h as f64 / w as f64, sh as f64 / sw as f64);
        if (a / b - 1.0).abs() > 0.25 {
            warnings.push(format!(
                "this {h}×{w} image was resized to the {sh}×{sw} whole images the model was trained on, \
                 changing its aspect ratio"
            ));
        }
    }
    warnings
}

impl Reading {
    /// The bone age as the clinical readout takes it (age models only).
    pub fn estimate(&self) -> Result<crate::readout::Estimate> {
        if self.target != Target::Age {
            return Err(Error::Invalid {
                what: "readout".into(),
                message: "this checkpoint predicts sex, not bone age".into(),
            });
        }
        Ok(crate::readout::Estimate {
            image: self.path.clone(),
            months: self.value,
            calibrated: self.calibrated,
            warnings: self.warnings.clone(),
            interval: self.interval,
            interval_source: self.interval_source.clone(),
            members: self.members.clone(),
            spread: self.spread,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sex_model_has_no_bone_age_to_read() {
        let r = Reading {
            path: "hand.png".into(),
            target: Target::Sex,
            value: 0.9,
            raw: 0.9,
            calibrated: false,
            clamped: false,
            warnings: vec![],
            dicom: None,
            interval: None,
            interval_source: String::new(),
            members: vec![],
            spread: None,
            tta: 0,
            tta_spread: None,
        };
        assert!(r
            .estimate()
            .unwrap_err()
            .to_string()
            .contains("predicts sex"));
    }

    #[test]
    fn blank_tiny_and_misplaced_images_are_flagged() {
        let pre = Preprocess::default(); // the recipe: a 2000×1500 crop of registered hands
        let black = GrayImage::new(1600, 2080);
        let w = image_warnings(&black, &pre);
        assert!(w.iter().any(|m| m.contains("no contrast")), "{w:?}");
        let tiny = GrayImage::from_fn(10, 10, |x, y| image::Luma([((x * 25 + y * 7) % 256) as u8]));
        let w = image_warnings(&tiny, &pre);
        assert!(w.iter().any(|m| m.contains("10×10")), "{w:?}");
        assert!(w.iter().any(|m| m.contains("outside this 10×10")), "{w:?}");
        let good = GrayImage::from_fn(1600, 2080, |x, y| {
            image::Luma([((x / 7 + y / 5) % 256) as u8])
        });
        assert_eq!(image_warnings(&good, &pre), Vec::<String>::new());
    }
}
