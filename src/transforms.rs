//! Radiograph preprocessing, run once per image before caching (and identically at
//! evaluation and prediction time): decode → optional fit to 2080×1600 → crop (with a
//! margin for augmentation, zero fill outside the image) → cubic scaling → intensity
//! normalisation. The recipe: crop 2000×1500 centred at (row 1040, col 800), scale 0.25
//! to 500×375, then standardise (x − 127.5) / 127.5 (done on the batch, see `loader`).
use std::path::Path;

use fast_image_resize as fr;
use image::GrayImage;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Per-image intensity normalisation, applied before caching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase", deny_unknown_fields)]
pub enum Normalize {
    /// Leave intensities as decoded (the recipe).
    #[default]
    None,
    /// Map the `low`–`high` percentiles (0–100) linearly to 0–255, clipping outside.
    Percentile { low: f64, high: f64 },
    /// Contrast-limited adaptive histogram equalisation on a `tiles`×`tiles` grid;
    /// `clip_limit` is relative to the mean bin count (OpenCV's convention).
    Clahe { clip_limit: f64, tiles: u32 },
}

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
    /// Images with more pixels than this are refused (decompression bombs).
    pub max_pixels: u64,
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
            max_pixels: 64 << 20,
        }
    }
}

/// Where the crop falls in an original radiograph, as `[top, left, height, width]` in
/// original pixels (fractional; parts may lie outside the image, which is zero-filled).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CropRegions {
    /// The network's input window (the centre crop, before augmentation).
    pub crop: [f64; 4],
    /// The cached window: the crop plus the augmentation margin.
    pub cached: [f64; 4],
    pub geometry: Geometry,
}

/// Sizes derived from [`Preprocess`] for an input of a given size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// The network's input [H, W].
    pub out: [usize; 2],
    /// The cached image [H, W]: `out` plus an even margin on each side.
    pub cached: [usize; 2],
}

impl Preprocess {
    /// Output and cached sizes for an image of `[h, w]` (after `fit`).
    pub fn geometry(&self, image_hw: [u32; 2]) -> Geometry {
        let crop = self.crop_hw().unwrap_or(image_hw);
        let out = crop.map(|c| ((c as f64 * self.scale).round() as usize).max(1));
        let cached = out.map(|o| o + 2 * (o as f64 * self.margin).round() as usize);
        Geometry { out, cached }
    }

    /// The geometry when it does not depend on the image's size (a crop, `fit` or
    /// `stretch`); `None` in whole-image mode, where each image's size decides.
    pub fn fixed_geometry(&self) -> Option<Geometry> {
        match (self.fit.or(self.stretch), self.crop_hw()) {
            (Some(hw), _) => Some(self.geometry(hw)),
            (None, Some(crop)) => Some(self.geometry(crop)),
            (None, None) => None,
        }
    }

    /// The crop size in force (`None`: the whole image).
    pub fn crop_hw(&self) -> Option<[u32; 2]> {
        if self.whole_image {
            None
        } else {
            self.crop_size
        }
    }

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
        if self.max_pixels == 0 {
            return bad("max_pixels = 0 refuses every image".into());
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
            _ => Ok(()),
        }
    }

    /// Decodes `path` and applies every step: the image that goes into the cache.
    pub fn load(&self, path: &Path) -> Result<GrayImage> {
        let img = decode_gray(path, self.max_pixels)?;
        self.apply(&img).map_err(|e| match e {
            Error::Invalid { message, .. } => Error::Image {
                path: path.to_path_buf(),
                message,
            },
            e => e,
        })
    }

    /// Where the crop falls in an original image of `original_hw` [H, W] (before `fit`).
    pub fn regions(&self, original_hw: [u32; 2]) -> CropRegions {
        let [h0, w0] = original_hw;
        // fitted = offset + factor · original, per axis [y, x].
        let (hw, factor, offset) = match self.fit {
            Some(target) => {
                let (nh, nw, top, left) = fit_box(h0, w0, target);
                (
                    target,
                    [nh as f64 / h0 as f64, nw as f64 / w0 as f64],
                    [top as f64, left as f64],
                )
            }
            None => match self.stretch {
                Some(t) => (
                    t,
                    [t[0] as f64 / h0 as f64, t[1] as f64 / w0 as f64],
                    [0.0, 0.0],
                ),
                None => ([h0, w0], [1.0, 1.0], [0.0, 0.0]),
            },
        };
        let geometry = self.geometry(hw);
        let crop = self.crop_hw().unwrap_or(hw).map(f64::from);
        let center = match (self.whole_image, self.crop_center) {
            (false, Some(c)) => c,
            _ => [hw[0] as f64 / 2.0, hw[1] as f64 / 2.0],
        };
        // A window of `size` (fitted pixels) around the centre, in the original's coordinates.
        let window = |size: [f64; 2]| {
            let start = [0, 1].map(|i| (center[i] - size[i] / 2.0 - offset[i]) / factor[i]);
            [start[0], start[1], size[0] / factor[0], size[1] / factor[1]]
        };
        // The region that maps onto the cached size: the crop plus the margin.
        let cached = [0, 1].map(|i| crop[i] * geometry.cached[i] as f64 / geometry.out[i] as f64);
        CropRegions {
            crop: window(crop),
            cached: window(cached),
            geometry,
        }
    }

    /// Fit, crop with margin, scale and normalise an already decoded image.
    ///
    /// Fitting, cropping and scaling compose into one resampling of the original: fitting
    /// is a per-axis scale plus a padding offset, so the crop window maps back onto the
    /// original and no full-size intermediate image is made.
    pub fn apply(&self, img: &GrayImage) -> Result<GrayImage> {
        let r = self.regions([img.height(), img.width()]);
        let g = r.geometry;
        let start = [r.cached[0].round() as i64, r.cached[1].round() as i64];
        let size = [2, 3].map(|i| r.cached[i].round().max(1.0) as u32);
        let cropped = crop_padded(img, start[0], start[1], size);
        let mut out = resize(&cropped, g.cached[1] as u32, g.cached[0] as u32)?;
        if let Some([lo, hi]) = self.squeeze {
            let (lo, span) = (lo as f64, hi as f64 - lo as f64);
            out.iter_mut()
                .for_each(|p| *p = (lo + *p as f64 * span / 255.0).round() as u8);
        }
        normalize(&mut out, self.normalize);
        Ok(out)
    }
}

/// Where an `h`×`w` image lands when fitted into `target` [H, W] keeping its aspect
/// ratio: (new height, new width, top padding, left padding).
pub fn fit_box(h: u32, w: u32, target: [u32; 2]) -> (u32, u32, u32, u32) {
    let s = (target[0] as f64 / h as f64).min(target[1] as f64 / w as f64);
    let nh = ((h as f64 * s).round() as u32).clamp(1, target[0]);
    let nw = ((w as f64 * s).round() as u32).clamp(1, target[1]);
    (nh, nw, (target[0] - nh) / 2, (target[1] - nw) / 2)
}

/// A reader for `path` with the format guessed from its content.
fn open_image(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>> {
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| Error::io(path, e))
}

/// An image's [H, W] from its header alone (nothing is decoded).
pub fn dimensions(path: &Path) -> Result<[u32; 2]> {
    let (w, h) = open_image(path)?
        .into_dimensions()
        .map_err(|e| Error::Image {
            path: path.to_path_buf(),
            message: format!("not a readable image: {e}"),
        })?;
    Ok([h, w])
}

/// [`dimensions`], refusing images of more than `max_pixels` (decompression bombs).
pub fn checked_dimensions(path: &Path, max_pixels: u64) -> Result<[u32; 2]> {
    let [h, w] = dimensions(path)?;
    let pixels = w as u64 * h as u64;
    if pixels > max_pixels {
        return Err(Error::Image {
            path: path.to_path_buf(),
            message: format!(
                "{w}×{h} = {pixels} pixels exceeds the limit of {max_pixels} (preprocess.max_pixels); \
                 refusing to decode (possible decompression bomb)"
            ),
        });
    }
    Ok([h, w])
}

/// Decodes a PNG or JPEG to 8-bit grayscale: RGB(A) and palette images by luminance,
/// 16-bit images by stretching their own min–max range to 0–255 (12-bit data would
/// otherwise come out nearly black). Refuses images over `max_pixels`.
pub fn decode_gray(path: &Path, max_pixels: u64) -> Result<GrayImage> {
    let bad = |message: String| Error::Image {
        path: path.to_path_buf(),
        message,
    };
    // Read the header alone first, so a huge image is refused before any allocation.
    let [h, w] = checked_dimensions(path, max_pixels)?;
    let pixels = w as u64 * h as u64;
    let mut reader = open_image(path)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(pixels * 8 + (1 << 20));
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| bad(format!("cannot decode: {e}")))?;
    Ok(match img {
        image::DynamicImage::ImageLuma8(g) => g,
        image::DynamicImage::ImageLuma16(g) => stretch_u16(&g),
        image::DynamicImage::ImageLumaA16(_)
        | image::DynamicImage::ImageRgb16(_)
        | image::DynamicImage::ImageRgba16(_) => stretch_u16(&img.to_luma16()),
        other => other.to_luma8(),
    })
}

fn stretch_u16(img: &image::ImageBuffer<image::Luma<u16>, Vec<u16>>) -> GrayImage {
    let (lo, hi) = img
        .iter()
        .fold((u16::MAX, 0u16), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let range = (hi.saturating_sub(lo)).max(1) as u32;
    let data = img
        .iter()
        .map(|&v| (((v - lo) as u32 * 255 + range / 2) / range) as u8)
        .collect();
    GrayImage::from_raw(img.width(), img.height(), data).expect("same size")
}

/// The `[h, w]` region at (`top`, `left`), with pixels outside the image set to 0.
pub fn crop_padded(img: &GrayImage, top: i64, left: i64, hw: [u32; 2]) -> GrayImage {
    let (iw, ih) = (img.width() as i64, img.height() as i64);
    let (h, w) = (hw[0] as i64, hw[1] as i64);
    let mut out = GrayImage::new(hw[1], hw[0]);
    let (x0, x1) = (left.max(0), (left + w).min(iw));
    if x0 < x1 {
        let src = img.as_raw();
        let dst: &mut [u8] = &mut out;
        for y in top.max(0)..(top + h).min(ih) {
            let s = (y * iw) as usize;
            let d = ((y - top) * w) as usize;
            dst[d + (x0 - left) as usize..d + (x1 - left) as usize]
                .copy_from_slice(&src[s + x0 as usize..s + x1 as usize]);
        }
    }
    out
}

/// Cubic (Catmull–Rom, antialiased) resize to `w`×`h`, SIMD-accelerated.
pub fn resize(img: &GrayImage, w: u32, h: u32) -> Result<GrayImage> {
    if img.width() == w && img.height() == h {
        return Ok(img.clone());
    }
    let src = fr::images::ImageRef::new(img.width(), img.height(), img.as_raw(), fr::PixelType::U8)
        .map_err(|e| Error::Invalid {
            what: "image".into(),
            message: e.to_string(),
        })?;
    let mut dst = fr::images::Image::new(w, h, fr::PixelType::U8);
    let opts =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::CatmullRom));
    fr::Resizer::new()
        .resize(&src, &mut dst, &opts)
        .map_err(|e| Error::Invalid {
            what: "resize".into(),
            message: e.to_string(),
        })?;
    Ok(GrayImage::from_raw(w, h, dst.into_vec()).expect("resizer output size"))
}

/// Resize keeping the aspect ratio to fit inside `[h, w]`, then pad (centred, black).
pub fn fit(img: &GrayImage, hw: [u32; 2]) -> GrayImage {
    let (nh, nw, top, left) = fit_box(img.height(), img.width(), hw);
    let scaled = resize(img, nw, nh).expect("valid sizes");
    crop_padded(&scaled, -(top as i64), -(left as i64), hw)
}

/// Applies `method` in place.
pub fn normalize(img: &mut GrayImage, method: Normalize) {
    match method {
        Normalize::None => {}
        Normalize::Percentile { low, high } => percentile_stretch(img, low, high),
        Normalize::Clahe { clip_limit, tiles } => clahe(img, clip_limit, tiles),
    }
}

/// Counts of each grey level.
pub fn histogram(pixels: impl Iterator<Item = u8>) -> [u64; 256] {
    let mut h = [0u64; 256];
    pixels.for_each(|p| h[p as usize] += 1);
    h
}

/// The grey level below which `q` percent of `hist` lies.
pub fn percentile(hist: &[u64; 256], q: f64) -> u8 {
    let total: u64 = hist.iter().sum();
    let target = (q / 100.0 * total as f64).ceil().max(1.0) as u64;
    let mut acc = 0;
    for (v, &c) in hist.iter().enumerate() {
        acc += c;
        if acc >= target {
            return v as u8;
        }
    }
    255
}

fn percentile_stretch(img: &mut GrayImage, low: f64, high: f64) {
    let hist = histogram(img.iter().copied());
    let (lo, hi) = (
        percentile(&hist, low) as f64,
        percentile(&hist, high) as f64,
    );
    if hi <= lo {
        return;
    }
    let lut: Vec<u8> = (0..256)
        .map(|v| {
            ((v as f64 - lo) * 255.0 / (hi - lo))
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    img.iter_mut().for_each(|p| *p = lut[*p as usize]);
}

/// CLAHE: per-tile clipped-histogram equalisation, bilinearly blended between tiles.
fn clahe(img: &mut GrayImage, clip_limit: f64, tiles: u32) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (tx, ty) = (
        tiles.min(w as u32).max(1) as usize,
        tiles.min(h as u32).max(1) as usize,
    );
    let (tw, th) = (w.div_ceil(tx), h.div_ceil(ty));
    let src = img.as_raw().clone();
    let mut luts = vec![[0u8; 256]; tx * ty];
    for j in 0..ty {
        for i in 0..tx {
            let (x0, x1, y0, y1) = (i * tw, ((i + 1) * tw).min(w), j * th, ((j + 1) * th).min(h));
            let n = ((x1 - x0) * (y1 - y0)).max(1) as u64;
            let mut hist =
                histogram((y0..y1).flat_map(|y| src[y * w + x0..y * w + x1].iter().copied()));
            let clip = ((clip_limit * n as f64 / 256.0) as u64).max(1);
            let excess: u64 = hist.iter().map(|&c| c.saturating_sub(clip)).sum();
            let (share, rest) = (excess / 256, (excess % 256) as usize);
            for (v, c) in hist.iter_mut().enumerate() {
                *c = (*c).min(clip) + share + u64::from(v < rest);
            }
            let mut acc = 0;
            for (v, &c) in hist.iter().enumerate() {
                acc += c;
                luts[j * tx + i][v] = ((acc * 255 + n / 2) / n).min(255) as u8;
            }
        }
    }
    // Tile centres; each pixel blends the four nearest tiles' mappings.
    let weights = |p: usize, size: usize, n: usize| {
        let f = ((p as f64 + 0.5) / size as f64 - 0.5).clamp(0.0, (n - 1) as f64);
        let a = (f.floor() as usize).min(n - 1);
        let b = (a + 1).min(n - 1);
        (a, b, f - a as f64)
    };
    let dst: &mut [u8] = img;
    for y in 0..h {
        let (ya, yb, fy) = weights(y, th, ty);
        for x in 0..w {
            let (xa, xb, fx) = weights(x, tw, tx);
            let v = src[y * w + x] as usize;
            let m = |jy: usize, ix: usize| luts[jy * tx + ix][v] as f64;
            let top = m(ya, xa) * (1.0 - fx) + m(ya, xb) * fx;
            let bot = m(yb, xa) * (1.0 - fx) + m(yb, xb) * fx;
            dst[y * w + x] = (top * (1.0 - fy) + bot * fy).round() as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: u32, h: u32) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| image::Luma([((x + 2 * y) % 256) as u8]))
    }

    #[test]
    fn crop_fills_outside_with_zero_and_keeps_the_shape() {
        let img = ramp(10, 8);
        let c = crop_padded(&img, -2, 7, [5, 6]);
        assert_eq!(c.dimensions(), (6, 5));
        assert_eq!(c.get_pixel(0, 0).0[0], 0, "above the image");
        assert_eq!(c.get_pixel(0, 2).0[0], img.get_pixel(7, 0).0[0]);
        assert_eq!(c.get_pixel(2, 4).0[0], img.get_pixel(9, 2).0[0]);
        assert_eq!(c.get_pixel(3, 4).0[0], 0, "right of the image");
        let far = crop_padded(&img, 100, 100, [3, 3]);
        assert!(far.iter().all(|&p| p == 0));
    }

    #[test]
    fn recipe_geometry_is_500_by_375_with_an_even_margin() {
        let p = Preprocess::default();
        let g = p.geometry([2080, 1600]);
        assert_eq!(g.out, [500, 375]);
        assert_eq!(g.cached, [600, 451]); // 500 + 2·50, 375 + 2·38
        let img = GrayImage::from_pixel(1600, 2080, image::Luma([200]));
        let out = p.apply(&img).unwrap();
        assert_eq!((out.height(), out.width()), (600, 451));
        // The centre is inside the hand region, the corners of the margin are outside the image.
        assert_eq!(out.get_pixel(225, 300).0[0], 200);
        assert_eq!(out.get_pixel(0, 0).0[0], 0);
    }

    #[test]
    fn whole_image_mode_keeps_the_size() {
        let p = Preprocess {
            whole_image: true,
            scale: 1.0,
            margin: 0.0,
            ..Default::default()
        };
        let img = ramp(128, 128);
        assert_eq!(p.apply(&img).unwrap(), img);
    }

    #[test]
    fn stretch_resizes_any_image_to_the_trained_size() {
        let p = Preprocess {
            whole_image: true,
            scale: 1.0,
            margin: 0.1,
            stretch: Some([128, 128]),
            ..Default::default()
        };
        let g = p.fixed_geometry().unwrap();
        for (w, h) in [(128, 128), (1514, 2044), (10, 10)] {
            let out = p.apply(&ramp(w, h)).unwrap();
            assert_eq!(
                [out.height() as usize, out.width() as usize],
                g.cached,
                "{w}×{h}"
            );
        }
        // At the trained size it changes nothing: the same pixels as without it.
        let plain = Preprocess {
            stretch: None,
            ..p.clone()
        };
        assert_eq!(
            p.apply(&ramp(128, 128)).unwrap(),
            plain.apply(&ramp(128, 128)).unwrap()
        );
        assert_eq!(plain.fixed_geometry(), None);
    }

    #[test]
    fn fit_keeps_aspect_and_pads_to_target() {
        let img = GrayImage::from_pixel(100, 50, image::Luma([255])); // landscape
        let f = fit(&img, [208, 160]);
        assert_eq!(f.dimensions(), (160, 208));
        // 100×50 → 160×80, centred vertically: rows 64..144 bright, the rest black.
        assert_eq!(f.get_pixel(80, 100).0[0], 255);
        assert_eq!(f.get_pixel(80, 10).0[0], 0);
        assert_eq!(f.get_pixel(80, 200).0[0], 0);
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
        let diff: f64 = direct
            .iter()
            .zip(two_step.iter())
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / direct.len() as f64;
        assert!(diff < 2.0, "mean abs difference {diff}");
    }

    #[test]
    fn percentile_stretch_restores_a_washed_out_image() {
        let mut img = GrayImage::from_fn(64, 64, |x, _| image::Luma([100 + (x as u8 % 40)]));
        normalize(
            &mut img,
            Normalize::Percentile {
                low: 1.0,
                high: 99.0,
            },
        );
        let (lo, hi) = img.iter().fold((255, 0), |(l, h), &p| (l.min(p), h.max(p)));
        assert_eq!((lo, hi), (0, 255));
    }

    #[test]
    fn clahe_spreads_a_narrow_range_and_keeps_order() {
        let mut img = GrayImage::from_fn(64, 64, |x, y| image::Luma([120 + ((x + y) / 16) as u8]));
        let before = img.clone();
        normalize(
            &mut img,
            Normalize::Clahe {
                clip_limit: 40.0,
                tiles: 4,
            },
        );
        let spread = |i: &GrayImage| {
            let (l, h) = i
                .iter()
                .fold((255u8, 0u8), |(l, h), &p| (l.min(p), h.max(p)));
            h - l
        };
        assert!(
            spread(&img) > 4 * spread(&before),
            "{} vs {}",
            spread(&img),
            spread(&before)
        );
        // Monotone within a tile: brighter input never maps darker.
        assert!(img.get_pixel(3, 0).0[0] >= img.get_pixel(0, 0).0[0]);
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
