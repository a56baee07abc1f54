//! DICOM grey levels to 8 bits, in the standard's order (PS3.4 N.2): the modality
//! rescale (slope, intercept), the VOI transform (the file's first window, else its VOI
//! LUT, else a percentile window of the rescaled values), MONOCHROME1 inverted so that
//! bone is bright as in the training PNGs, then 0–255. Pure functions of the stored
//! values, so a test can redo every step from pydicom's arrays.
use dicom_pixeldata::{Rescale, VoiLutFunction, WindowLevel, WindowLevelTransform};

use super::WindowSource;

use super::PERCENTILE_WINDOW;

/// The VOI transform to apply.
#[derive(Clone, Debug, PartialEq)]
pub enum Voi {
    Window {
        window: WindowLevel,
        function: VoiLutFunction,
    },
    /// Values at or below `first` map to `data[0]`, `first + i` to `data[i]`, past the
    /// end to the last entry; entries are stretched over their own range to 0–1.
    Lut {
        first: i32,
        data: Vec<u16>,
    },
    Percentile,
}

impl Voi {
    pub fn source(&self) -> WindowSource {
        match self {
            Voi::Window { .. } => WindowSource::Window,
            Voi::Lut { .. } => WindowSource::VoiLut,
            Voi::Percentile => WindowSource::Percentile,
        }
    }
}

/// The nearest-rank value at percentile `q` (0–100) of sorted `values`.
fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let k = (q / 100.0 * (sorted.len() - 1) as f64 + 0.5).floor() as usize;
    sorted[k.min(sorted.len() - 1)]
}

/// 0–1 to 0–255, rounding halves up.
fn to_u8(y: f64) -> u8 {
    (255.0 * y.clamp(0.0, 1.0) + 0.5).floor() as u8
}

/// Stored sample values → 8-bit grey levels, bone bright. `values` is one frame, row-major.
pub fn to_gray8(values: &[f64], rescale: Rescale, voi: &Voi, monochrome1: bool) -> Vec<u8> {
    if values.is_empty() {
        return Vec::new();
    }
    let rescaled: Vec<f64> = values.iter().map(|&v| rescale.apply(v)).collect();
    let unit: Box<dyn Fn(f64) -> f64> = match voi {
        Voi::Window { window, function } => {
            let t = WindowLevelTransform::new(*function, *window);
            Box::new(move |x| t.apply(x, 1.0))
        }
        Voi::Lut { first, data } if !data.is_empty() => {
            let (lo, hi) = data
                .iter()
                .fold((u16::MAX, 0u16), |(l, h), &v| (l.min(v), h.max(v)));
            let span = (hi - lo).max(1) as f64;
            let first = *first as f64;
            Box::new(move |x| {
                let i = (x.round() - first).clamp(0.0, (data.len() - 1) as f64) as usize;
                (data[i] - lo) as f64 / span
            })
        }
        Voi::Lut { .. } | Voi::Percentile => {
            let mut sorted = rescaled.clone();
            sorted.sort_by(f64::total_cmp);
            let lo = nearest_rank(&sorted, PERCENTILE_WINDOW[0]);
            let hi = nearest_rank(&sorted, PERCENTILE_WINDOW[1]);
            if hi > lo {
                Box::new(move |x| (x - lo) / (hi - lo))
            } else {
                Box::new(|_| 0.0)
            }
        }
    };
    rescaled
        .iter()
        .map(|&x| {
            let y = unit(x).clamp(0.0, 1.0);
            to_u8(if monochrome1 { 1.0 - y } else { y })
        })
        .collect()
}

/// 8-bit RGB (interleaved) to grey with the luminance weights `image` uses for PNGs.
pub fn rgb_luma(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| ((2126 * p[0] as u32 + 7152 * p[1] as u32 + 722 * p[2] as u32) / 10000) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_then_inversion_then_eight_bits() {
        // A 12-bit CR: rescale 2x − 100, window centre 1000 width 1001 (so 500..1500 spans
        // 0–1 exactly), MONOCHROME1 turned so that high (dense) values come out bright.
        let window = Voi::Window {
            window: WindowLevel {
                center: 1000.5,
                width: 1001.0,
            },
            function: VoiLutFunction::Linear,
        };
        let values = [300.0, 800.0, 550.0, 4000.0];
        let rescale = Rescale::new(2.0, -100.0);
        assert_eq!(
            to_gray8(&values, rescale, &window, false),
            [0, 255, 128, 255]
        );
        assert_eq!(to_gray8(&values, rescale, &window, true), [255, 0, 128, 0]);
    }

    #[test]
    fn without_a_window_the_full_range_is_used_and_flat_images_go_black() {
        let values: Vec<f64> = (0..1001).map(|i| 3000.0 + 2.0 * i as f64).collect();
        let out = to_gray8(&values, Rescale::new(1.0, 0.0), &Voi::Percentile, false);
        assert_eq!((out[0], out[500], out[1000]), (0, 128, 255));
        let inverted = to_gray8(&values, Rescale::new(1.0, 0.0), &Voi::Percentile, true);
        assert_eq!((inverted[0], inverted[1000]), (255, 0));
        let flat = to_gray8(&[7.0; 10], Rescale::new(1.0, 0.0), &Voi::Percentile, false);
        assert!(flat.iter().all(|&v| v == 0));
    }

    #[test]
    fn voi_lut_maps_through_its_entries() {
        let lut = Voi::Lut {
            first: 10,
            data: vec![100, 200, 300],
        };
        let out = to_gray8(
            &[0.0, 11.0, 12.0, 99.0],
            Rescale::new(1.0, 0.0),
            &lut,
            false,
        );
        assert_eq!(out, [0, 128, 255, 255]);
    }
}
