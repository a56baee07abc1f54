//! The `[preprocess]` stage, run once per image before caching (and identically at
//! evaluation and prediction time): decode ([`decode`], DICOM through [`dicom`]) → the
//! inversion check and the crop to the hand ([`hand`], `[preprocess.hand]`) → optional fit to 2080×1600 →
//! crop with a margin for augmentation, zero fill outside the image → cubic scaling
//! ([`geometry`]) → intensity normalisation ([`intensity`]). The recipe: crop 2000×1500
//! centred at (row 1040, col 800), scale 0.25 to 500×375, then standardise
//! (x − 127.5) / 127.5 (done on the batch, see `loader`).
use std::path::Path;

use image::GrayImage;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub mod decode;
pub mod dicom;
pub mod geometry;
pub mod hand;
pub mod intensity;
pub mod survey;

pub use decode::{checked_dimensions, decode, decode_gray, dimensions, Decoded};
pub use geometry::{crop_padded, fit, fit_box, resize, CropRegions, Geometry};
pub use hand::{find_hand, looks_inverted, HandBox, HandConfig, HandCrop, OnFailure};
pub use intensity::{histogram, map_levels, normalize, percentile, Normalize};

/// The geometry and intensity steps before caching. `Default` is the recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Preprocess {
    /// Raw radiographs of any size: first resize keeping the aspect ratio and pad
    /// (centred, black) to this [H, W], so the registered-image crop applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit: Option<[u32; 2]>,
    /// Resize to exactly this [H, W] first, aspect ratio not kept. Inference sets it for
    /// whole-image models, so an image of another size reaches the size the model was
    /// trained on (as the squashed 128×128 and 299×299 RSNA copies were made).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stretch: Option<[u32; 2]>,
    /// Use the whole image (after `fit`): no crop, `crop_center`/`crop_size` ignored.
    /// For pre-cropped data such as 128×128 or phantom images.
    pub whole_image: bool,
    /// Crop centre [row, col] in pixels; unset = the image centre.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop_center: Option<[f64; 2]>,
    /// Crop size [H, W] in pixels; unset = the whole image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crop_size: Option<[u32; 2]>,
    /// Scale factor after cropping (cubic, antialiased).
    pub scale: f64,
    /// Extra border kept around the crop, as a fraction of the output size, so
    /// that augmentation samples real pixels at the edges.
    pub margin: f64,
    pub normalize: Normalize,
    /// Robustness checks only: squeeze intensities linearly into [low, high] before
    /// normalisation, imitating a washed-out scanner. Unset in training.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub squeeze: Option<[u8; 2]>,
    /// Robustness checks only: raise intensities in [0, 1] to this power before
    /// normalisation (above 1 darkens the mid-tones, imitating an underexposed or
    /// differently windowed scanner). Applied after `squeeze`. Unset in training.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub darken: Option<f64>,
    /// Images with more pixels than this are refused (decompression bombs).
    pub max_pixels: u64,
    /// The inversion check and the crop to the hand, before everything above.
    pub hand: HandConfig,
}

/// An image after the checks and the crop to the hand, before the geometry steps.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub image: GrayImage,
    /// The hand's box in the decoded image, when it was cropped to it.
    pub hand: Option<HandBox>,
    /// Whether the inversion check turned the image back.
    pub inverted: bool,
    /// What was done about the image (inverted back, left uncropped), with why.
    pub warnings: Vec<String>,
}

impl Default for Preprocess {
    fn default() -> Self {
        Self {
            fit: None,
            stretch: None,
            whole_image: false,
            crop_center: Some([1040.0, 800.0]),
            crop_size: Some([2000, 1500]),
            scale: 0.25,
            margin: 0.1,
            normalize: Normalize::None,
            squeeze: None,
            darken: None,
            max_pixels: 64 << 20,
            hand: HandConfig::default(),
        }
    }
}

impl Preprocess {
    /// Checks the parameters; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| {
            Err(Error::Invalid {
                what: "preprocess config".into(),
                message,
            })
        };
        if !(self.scale > 0.0 && self.scale <= 4.0) {
            return bad(format!("scale = {} must be in (0, 4]", self.scale));
        }
        if !(0.0..=1.0).contains(&self.margin) {
            return bad(format!("margin = {} must be in [0, 1]", self.margin));
        }
        if [self.crop_size, self.fit, self.stretch]
            .iter()
            .any(|v| matches!(v, Some([0, _] | [_, 0])))
        {
            return bad("crop_size, fit and stretch must be positive".into());
        }
        if self.fit.is_some() && self.stretch.is_some() {
            return bad("fit and stretch exclude each other".into());
        }
        if let Some(g) = self.darken {
            if !(g.is_finite() && (0.1..=10.0).contains(&g)) {
                return bad(format!("darken = {g} must be in [0.1, 10]"));
            }
        }
        if self.max_pixels == 0 {
            return bad("max_pixels = 0 refuses every image".into());
        }
        if !(0.0..=1.0).contains(&self.hand.margin) {
            return bad(format!(
                "hand.margin = {} must be in [0, 1]",
                self.hand.margin
            ));
        }
        if self.hand.crop == HandCrop::On
            && self.whole_image
            && self.fit.is_none()
            && self.stretch.is_none()
        {
            return bad(
                "hand.crop = \"on\" in whole-image mode needs fit or stretch: the crops differ in size".into(),
            );
        }
        if self.hand.not_found == OnFailure::Off {
            return bad("hand.not_found must be \"refuse\" or \"fix\" (keep uncropped)".into());
        }
        match self.normalize {
            Normalize::Percentile { low, high } if !(0.0 <= low && low < high && high <= 100.0) => {
                bad(format!(
                    "percentiles low = {low}, high = {high} need 0 <= low < high <= 100"
                ))
            }
            Normalize::Clahe { clip_limit, tiles } if clip_limit < 1.0 || tiles == 0 => bad(
                format!("clahe clip_limit = {clip_limit} must be >= 1, tiles = {tiles} >= 1"),
            ),
            Normalize::Match { mean, sd }
                if !((0.0..=255.0).contains(&mean) && sd.is_finite() && sd >= 1.0) =>
            {
                bad(format!(
                    "match mean = {mean} must be in [0, 255] and sd = {sd} >= 1"
                ))
            }
            _ => Ok(()),
        }
    }

    /// Decodes `path` and applies every step: the image that goes into the cache. What
    /// the checks did is logged as warnings.
    pub fn load(&self, path: &Path) -> Result<GrayImage> {
        let decoded = decode(path, self.max_pixels)?;
        let prepared = self.prepare(path, decoded.image, decoded.dicom.is_some())?;
        for w in &prepared.warnings {
            tracing::warn!("{}: {w}", path.display());
        }
        self.apply(&prepared.image).map_err(|e| match e {
            Error::Invalid { message, .. } => Error::Image {
                path: path.to_path_buf(),
                message,
            },
            e => e,
        })
    }

    /// The inversion check, then the crop to the hand (for DICOM input, or every image,
    /// as `hand.crop` says). `path` names the image in errors.
    pub fn prepare(&self, path: &Path, mut image: GrayImage, is_dicom: bool) -> Result<Prepared> {
        let refuse = |message: String| Error::Image {
            path: path.to_path_buf(),
            message,
        };
        let mut warnings = Vec::new();
        let inverted = self.hand.inverted != OnFailure::Off && looks_inverted(&image);
        if inverted {
            let what =
                "the border is brighter than the centre: the image looks inverted (bone dark)";
            if self.hand.inverted == OnFailure::Refuse {
                return Err(refuse(format!(
                    "{what}; refused (preprocess.hand.inverted = \"refuse\")"
                )));
            }
            image::imageops::invert(&mut image);
            warnings.push(format!(
                "{what}; inverted back (preprocess.hand.inverted = \"fix\")"
            ));
        }
        let crop = match self.hand.crop {
            HandCrop::Off => false,
            HandCrop::Dicom => is_dicom,
            HandCrop::On => true,
        };
        let mut hand = None;
        if crop {
            match find_hand(&image, self.hand.margin) {
                Ok(b) => {
                    let [top, left, h, w] = b.rect;
                    image = image::imageops::crop_imm(&image, left, top, w, h).to_image();
                    hand = Some(b);
                }
                Err(why) if self.hand.not_found == OnFailure::Refuse => {
                    return Err(refuse(format!(
                        "{why} (preprocess.hand.not_found = \"refuse\")"
                    )))
                }
                Err(why) => warnings.push(format!("{why}; processed uncropped")),
            }
        }
        Ok(Prepared {
            image,
            hand,
            inverted,
            warnings,
        })
    }

    /// Fit, crop with margin, scale and normalise an already decoded image.
    ///
    /// Fitting, cropping and scaling compose into one resampling of the original: fitting
    /// is a per-axis scale plus a padding offset, so the crop window maps back onto the
    /// original and no full-size intermediate image is made.
    ///
    /// The intensity steps (robustness shifts, then normalisation) see only the pixels
    /// that came from the image: the zero-filled frame around it (the margin past the
    /// image's edge) stays 0 and does not count towards the percentiles, so neither its
    /// size nor a shift of the image's grey levels moves it.
    pub fn apply(&self, img: &GrayImage) -> Result<GrayImage> {
        let r = self.regions([img.height(), img.width()]);
        let g = r.geometry;
        let start = [r.cached[0].round() as i64, r.cached[1].round() as i64];
        let size = [2, 3].map(|i| r.cached[i].round().max(1.0) as u32);
        let cropped = crop_padded(img, start[0], start[1], size);
        let mut out = resize(&cropped, g.cached[1] as u32, g.cached[0] as u32)?;
        let [y0, x0, h, w] = inside(&r, [img.height(), img.width()], [out.height(), out.width()]);
        if h == 0 || w == 0 {
            return Ok(out);
        }
        let mut image = image::imageops::crop_imm(&out, x0, y0, w, h).to_image();
        if let Some([lo, hi]) = self.squeeze {
            let (lo, span) = (lo as f64, hi as f64 - lo as f64);
            map_levels(&mut image, |p| (lo + p as f64 * span / 255.0).round() as u8);
        }
        if let Some(gamma) = self.darken {
            map_levels(&mut image, |v| {
                (255.0 * (v as f64 / 255.0).powf(gamma)).round() as u8
            });
        }
        normalize(&mut image, self.normalize);
        image::imageops::replace(&mut out, &image, x0 as i64, y0 as i64);
        Ok(out)
    }
}

/// The part of the cached image (`out_hw` [H, W]) that came from the image rather than
/// the zero fill past its edges, as [top, left, height, width], shrunk by one pixel on
/// each side the fill touches (the cubic kernel blends the edge with the fill).
fn inside(r: &CropRegions, original_hw: [u32; 2], out_hw: [u32; 2]) -> [u32; 4] {
    let span = |axis: usize| {
        let (start, len) = (r.cached[axis], r.cached[axis + 2]);
        let n = out_hw[axis] as f64;
        let per = n / len.max(1e-9);
        let lo = ((0.0 - start) * per).max(0.0);
        let hi = ((original_hw[axis] as f64 - start) * per).min(n);
        let lo = if lo > 0.0 { lo.ceil() + 1.0 } else { 0.0 };
        let hi = if hi < n { hi.floor() - 1.0 } else { n };
        (lo as u32, (hi - lo).max(0.0) as u32)
    };
    let ((y0, h), (x0, w)) = (span(0), span(1));
    [y0, x0, h, w]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_abs_difference(a: &GrayImage, b: &GrayImage) -> f64 {
        let sum: f64 = a
            .iter()
            .zip(b.iter())
            .map(|(x, y)| (*x as f64 - *y as f64).abs())
            .sum();
        sum / a.len() as f64
    }

    #[test]
    fn composed_fit_and_crop_match_fitting_first() {
        // A raw-like landscape image: fitting then cropping equals the one-step path
        // (up to the second interpolation of the two-step path).
        let img = GrayImage::from_fn(300, 200, |x, y| {
            let v = 128.0 + 60.0 * (x as f64 / 15.0).sin() + 60.0 * (y as f64 / 11.0).cos();
            image::Luma([v as u8])
        });
        let p = Preprocess {
            fit: Some([208, 160]),
            crop_center: Some([104.0, 80.0]),
            crop_size: Some([200, 150]),
            scale: 0.5,
            ..Default::default()
        };
        let direct = p.apply(&img).unwrap();
        let two_step = Preprocess {
            fit: None,
            ..p.clone()
        }
        .apply(&fit(&img, [208, 160]))
        .unwrap();
        assert_eq!(direct.dimensions(), two_step.dimensions());
        let diff = mean_abs_difference(&direct, &two_step);
        assert!(diff < 2.0, "mean abs difference {diff}");
    }

    #[test]
    fn intensity_steps_see_the_image_not_the_frame_around_it() {
        // A whole-image crop with a 10% margin: the cached image has a zero frame. The
        // percentiles come from the image alone, so its darkest level maps to 0 and its
        // brightest to 255 whatever the frame's size, and the frame stays 0.
        let img = GrayImage::from_fn(100, 100, |x, y| image::Luma([60 + ((x + y) % 100) as u8]));
        let p = Preprocess {
            whole_image: true,
            scale: 1.0,
            margin: 0.1,
            normalize: Normalize::Percentile {
                low: 1.0,
                high: 99.0,
            },
            ..Default::default()
        };
        let out = p.apply(&img).unwrap();
        assert_eq!(out.dimensions(), (120, 120));
        let [y0, x0, h, w] = inside(&p.regions([100, 100]), [100, 100], [120, 120]);
        assert_eq!(
            [y0, x0, h, w],
            [11, 11, 98, 98],
            "the image, less its blended edge"
        );
        assert!(out.get_pixel(3, 3).0[0] == 0 && out.get_pixel(116, 60).0[0] == 0);
        let inner = image::imageops::crop_imm(&out, x0, y0, w, h).to_image();
        let (lo, hi) = inner
            .iter()
            .fold((255u8, 0u8), |(l, h), &v| (l.min(v), h.max(v)));
        assert_eq!((lo, hi), (0, 255), "stretched over the image's own range");
        // A washed-out scanner (squeezed into 100–180): the frame does not move, and the
        // normalised image is the unsqueezed one up to the lost grey levels.
        let squeezed = Preprocess {
            squeeze: Some([100, 180]),
            ..p.clone()
        }
        .apply(&img)
        .unwrap();
        assert_eq!(squeezed.get_pixel(3, 3).0[0], 0, "the frame stays black");
        let diff = mean_abs_difference(&out, &squeezed);
        assert!(diff < 2.0, "mean abs difference {diff}");
        // Darkening changes the image, not the frame, and survives the linear stretch.
        let dark = Preprocess {
            darken: Some(1.5),
            ..p.clone()
        }
        .apply(&img)
        .unwrap();
        assert_eq!(dark.get_pixel(3, 3).0[0], 0);
        let mean = |i: &GrayImage| {
            let inner = image::imageops::crop_imm(i, x0, y0, w, h).to_image();
            inner.iter().map(|&v| v as f64).sum::<f64>() / inner.len() as f64
        };
        assert!(
            mean(&dark) < mean(&out) - 10.0,
            "{} vs {}",
            mean(&dark),
            mean(&out)
        );
    }

    #[test]
    fn an_image_without_a_plausible_hand_is_kept_uncropped_or_refused_as_configured() {
        let empty = GrayImage::from_pixel(200, 200, image::Luma([30]));
        let mut p = Preprocess::default();
        p.hand.crop = HandCrop::On;
        let kept = p
            .prepare(Path::new("flat.png"), empty.clone(), false)
            .unwrap();
        assert!(kept.hand.is_none() && kept.image == empty);
        assert!(
            kept.warnings[0].contains("processed uncropped"),
            "{:?}",
            kept.warnings
        );
        p.hand.not_found = OnFailure::Refuse;
        let err = p
            .prepare(Path::new("flat.png"), empty.clone(), false)
            .unwrap_err();
        assert!(err.to_string().contains("flat.png"), "{err}");
        // "dicom" crops DICOM input only.
        p.hand.crop = HandCrop::Dicom;
        assert!(p.prepare(Path::new("flat.png"), empty, false).is_ok());
    }

    #[test]
    fn bad_parameters_name_the_field() {
        let p = Preprocess {
            scale: 0.0,
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().to_string().contains("scale"));
        let p = Preprocess {
            normalize: Normalize::Percentile {
                low: 99.0,
                high: 1.0,
            },
            ..Default::default()
        };
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("percentiles"));
    }
}
