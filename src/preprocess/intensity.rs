//! Intensity: per-image normalisation (none, percentile stretch, CLAHE, histogram
//! matching to a reference) and the grey-level histogram and percentiles it and the input
//! checks use.
use image::GrayImage;
use serde::{Deserialize, Serialize};

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
    /// Histogram matching: map each grey level through the image's cumulative histogram
    /// onto a reference one, a normal distribution of grey levels with this `mean` and
    /// `sd` (0–255, cut to the range), so every scanner's image gets the same histogram.
    Match { mean: f64, sd: f64 },
}

/// Applies `method` in place.
pub fn normalize(img: &mut GrayImage, method: Normalize) {
    match method {
        Normalize::None => {}
        Normalize::Percentile { low, high } => percentile_stretch(img, low, high),
        Normalize::Clahe { clip_limit, tiles } => clahe(img, clip_limit, tiles),
        Normalize::Match { mean, sd } => match_normal(img, mean, sd),
    }
}

/// The cumulative share of a normal(`mean`, `sd`) distribution cut to 0–255 at or below
/// each grey level.
fn normal_cdf_levels(mean: f64, sd: f64) -> [f64; 256] {
    let density: Vec<f64> = (0..256)
        .map(|v| (-0.5 * ((v as f64 - mean) / sd).powi(2)).exp())
        .collect();
    let total: f64 = density.iter().sum();
    let mut cdf = [0.0; 256];
    let mut acc = 0.0;
    for (c, d) in cdf.iter_mut().zip(&density) {
        acc += d / total;
        *c = acc;
    }
    cdf
}

fn match_normal(img: &mut GrayImage, mean: f64, sd: f64) {
    let hist = histogram(img.iter().copied());
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return;
    }
    let reference = normal_cdf_levels(mean, sd);
    // The middle of each level's share of the image, mapped to the reference level whose
    // cumulative share first reaches it.
    let mut below = [0u64; 256];
    let mut acc = 0u64;
    for (b, &c) in below.iter_mut().zip(&hist) {
        *b = acc;
        acc += c;
    }
    map_levels(img, |v| {
        let q = (below[v as usize] as f64 + hist[v as usize] as f64 / 2.0) / total as f64;
        reference.iter().position(|&r| r >= q).unwrap_or(255) as u8
    });
}

/// Maps every grey level of `img` through `f`, evaluated once per level (a lookup table).
pub fn map_levels(img: &mut GrayImage, f: impl Fn(u8) -> u8) {
    let lut: Vec<u8> = (0..=255u8).map(f).collect();
    img.iter_mut().for_each(|p| *p = lut[*p as usize]);
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
    map_levels(img, |v| {
        ((v as f64 - lo) * 255.0 / (hi - lo))
            .round()
            .clamp(0.0, 255.0) as u8
    });
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
    fn matching_gives_two_scanners_the_same_histogram() {
        // One hand-like ramp as two scanners record it: full contrast, and washed out
        // into 100–180 with darker mid-tones.
        let full = GrayImage::from_fn(64, 64, |x, y| image::Luma([((x * 4 + y) % 256) as u8]));
        let mut washed = full.clone();
        washed.iter_mut().for_each(|p| {
            *p = (100.0 + 80.0 * (*p as f64 / 255.0).powf(1.5)).round() as u8;
        });
        let method = Normalize::Match {
            mean: 110.0,
            sd: 50.0,
        };
        let (mut a, mut b) = (full.clone(), washed);
        normalize(&mut a, method);
        normalize(&mut b, method);
        let mean = |i: &GrayImage| i.iter().map(|&p| p as f64).sum::<f64>() / i.len() as f64;
        let sd = |i: &GrayImage| {
            let m = mean(i);
            (i.iter().map(|&p| (p as f64 - m).powi(2)).sum::<f64>() / i.len() as f64).sqrt()
        };
        for img in [&a, &b] {
            assert!((mean(img) - 110.0).abs() < 4.0, "mean {}", mean(img));
            assert!((sd(img) - 50.0).abs() < 5.0, "sd {}", sd(img));
        }
        // Order is kept: a brighter input pixel never maps darker.
        let order = |i: &GrayImage| {
            let mut pairs: Vec<(u8, u8)> = full.iter().copied().zip(i.iter().copied()).collect();
            pairs.sort();
            pairs.windows(2).all(|w| w[0].1 <= w[1].1)
        };
        assert!(order(&a) && order(&b));
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
}
