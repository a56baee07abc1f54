//! Geometry: where the crop falls in a radiograph, the sizes it gives, and the crop,
//! resize and fit operations on decoded images.
use fast_image_resize as fr;
use image::GrayImage;

use super::Preprocess;
use crate::error::{Error, Result};

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
}

/// Where an `h`×`w` image lands when fitted into `target` [H, W] keeping its aspect
/// ratio: (new height, new width, top padding, left padding).
pub fn fit_box(h: u32, w: u32, target: [u32; 2]) -> (u32, u32, u32, u32) {
    let s = (target[0] as f64 / h as f64).min(target[1] as f64 / w as f64);
    let nh = ((h as f64 * s).round() as u32).clamp(1, target[0]);
    let nw = ((w as f64 * s).round() as u32).clamp(1, target[1]);
    (nh, nw, (target[0] - nh) / 2, (target[1] - nw) / 2)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn ramp(w: u32, h: u32) -> GrayImage {
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
}
