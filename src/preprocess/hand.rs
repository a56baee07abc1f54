//! Quality control and framing of raw radiographs (`[preprocess.hand]`), before `fit`:
//! an inversion check (a background brighter than the hand: an inverted PNG, or wrong
//! metadata) and a crop to the hand. The hand is the largest bright region at an Otsu
//! threshold on a small copy, after a closing that joins fingers to the palm; regions
//! touching three or more edges (collimator borders, the background of an inverted
//! image) and small ones (lead markers, text labels) are not it.
use image::GrayImage;
use imageproc::contrast::otsu_level;
use imageproc::distance_transform::Norm;
use imageproc::region_labelling::{connected_components, Connectivity};
use serde::{Deserialize, Serialize};

/// When to crop to the hand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandCrop {
    Off,
    /// DICOM input only (raw scanner images); PNGs are taken as they are framed.
    #[default]
    Dicom,
    /// Every image.
    On,
}

/// What to do with an image the check rejects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Refuse the image, saying why.
    Refuse,
    /// Inversion: invert it back. Crop: keep it uncropped. Either with a warning.
    #[default]
    Fix,
    /// Inversion only: do not check.
    Off,
}

/// `[preprocess.hand]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandConfig {
    pub crop: HandCrop,
    /// Border around the hand's box, as a fraction of the box's longer side.
    pub margin: f64,
    /// No plausible hand found: `refuse`, or `fix` (keep the image uncropped, with a warning).
    pub not_found: OnFailure,
    /// A background brighter than the hand: `fix` (invert, with a warning), `refuse`, or
    /// `off` (no check).
    pub inverted: OnFailure,
}

impl Default for HandConfig {
    fn default() -> Self {
        Self {
            crop: HandCrop::Dicom,
            margin: 0.05,
            not_found: OnFailure::Fix,
            inverted: OnFailure::Fix,
        }
    }
}

/// The side of the small copy the hand is searched on.
const SEARCH_PX: u32 = 256;
/// The hand's region must cover at least this fraction of the frame…
const MIN_AREA: f64 = 0.02;
/// …and at most this much (else the threshold found no background).
const MAX_AREA: f64 = 0.92;

/// The hand's box in image pixels (with the margin), and the fraction of the frame the
/// hand's region covers (its box's, when found inside an exposure field).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HandBox {
    /// [top, left, height, width].
    pub rect: [u32; 4],
    pub area: f64,
}

/// A small copy for the search, and its scale back to the image.
fn small(img: &GrayImage) -> (GrayImage, f64) {
    let s = (SEARCH_PX as f64 / img.width().max(img.height()) as f64).min(1.0);
    let (w, h) = (
        ((img.width() as f64 * s).round() as u32).max(1),
        ((img.height() as f64 * s).round() as u32).max(1),
    );
    (
        image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle),
        s,
    )
}

/// Finds the hand, or says why there is no plausible one. Many raw radiographs show the
/// exposure field as a grey rectangle on black: when the region found fills its box
/// like a rectangle, the hand is searched for again inside it, against the field.
pub fn find_hand(img: &GrayImage, margin: f64) -> Result<HandBox, String> {
    // Inside a field: the hand against the field's grey, in image pixels.
    let inside = |[t, l, h, w]: [u32; 4]| {
        let field = image::imageops::crop_imm(img, l, t, w, h).to_image();
        region(&field, false)
            .ok()
            .map(|([t2, l2, h2, w2], _)| [t + t2, l + l2, h2, w2])
            .filter(|&b| first_area(img, b) > MIN_AREA)
    };
    match region(img, false) {
        Ok((first, fill)) if fill > FIELD_FILL => {
            let hand = inside(first).unwrap_or(first);
            Ok(with_margin(img, hand, margin, first_area(img, hand)))
        }
        Ok((first, fill)) => Ok(with_margin(
            img,
            first,
            margin,
            first_area(img, first) * fill,
        )),
        // The field may reach three edges (a thin black border on one side only).
        Err(why) => match region(img, true).ok().and_then(|(field, _)| inside(field)) {
            Some(hand) => Ok(with_margin(img, hand, margin, first_area(img, hand))),
            None => Err(why),
        },
    }
}

/// A region filling more than this fraction of its box is taken for the exposure field.
const FIELD_FILL: f64 = 0.85;

/// The fraction of `img` a box covers.
fn first_area(img: &GrayImage, [_, _, h, w]: [u32; 4]) -> f64 {
    (h as f64 * w as f64) / (img.width() as f64 * img.height() as f64)
}

/// `rect` grown by `margin` of its longer side, within the image.
fn with_margin(img: &GrayImage, [t, l, h, w]: [u32; 4], margin: f64, area: f64) -> HandBox {
    let m = margin * h.max(w) as f64;
    let top = (t as f64 - m).max(0.0);
    let left = (l as f64 - m).max(0.0);
    let bottom = ((t + h) as f64 + m).min(img.height() as f64);
    let right = ((l + w) as f64 + m).min(img.width() as f64);
    HandBox {
        rect: [
            top as u32,
            left as u32,
            ((bottom - top).round() as u32).max(1),
            ((right - left).round() as u32).max(1),
        ],
        area,
    }
}

/// The largest plausible bright region's box `[top, left, h, w]` in image pixels, and
/// the fraction of that box it fills.
/// With `edges`, regions touching three or more edges count too (the search for a field).
fn region(img: &GrayImage, edges_allowed: bool) -> Result<([u32; 4], f64), String> {
    let (s_img, scale) = small(img);
    let (w, h) = s_img.dimensions();
    let level = otsu_level(&s_img);
    let (lo, hi) = s_img
        .iter()
        .fold((255u8, 0u8), |(l, h), &v| (l.min(v), h.max(v)));
    if hi.saturating_sub(lo) < 16 {
        return Err(format!(
            "an empty image (grey levels {lo}–{hi}): no hand to find"
        ));
    }
    let mut mask = GrayImage::from_fn(w, h, |x, y| {
        image::Luma([if s_img.get_pixel(x, y).0[0] > level {
            255
        } else {
            0
        }])
    });
    mask = imageproc::morphology::close(&mask, Norm::LInf, 2);
    let labels = connected_components(&mask, Connectivity::Eight, image::Luma([0u8]));
    // Per label: area, box [y0, x0, y1, x1], the image edges it touches.
    let n = labels.iter().copied().max().unwrap_or(0) as usize;
    let mut area = vec![0u64; n + 1];
    let mut bbox = vec![[u32::MAX, u32::MAX, 0, 0]; n + 1];
    for (x, y, l) in labels.enumerate_pixels() {
        let l = l.0[0] as usize;
        if l == 0 {
            continue;
        }
        area[l] += 1;
        let b = &mut bbox[l];
        *b = [b[0].min(y), b[1].min(x), b[2].max(y), b[3].max(x)];
    }
    let edges = |b: &[u32; 4]| {
        [b[0] == 0, b[1] == 0, b[2] + 1 >= h, b[3] + 1 >= w]
            .iter()
            .filter(|&&t| t)
            .count()
    };
    let total = (w * h) as f64;
    let best = (1..=n)
        .filter(|&l| edges_allowed || edges(&bbox[l]) < 3 || area[l] as f64 / total > MAX_AREA)
        .max_by_key(|&l| area[l]);
    let Some(l) = best else {
        return Err("no bright region apart from the image's borders: no hand found".into());
    };
    let frac = area[l] as f64 / total;
    if frac < MIN_AREA {
        return Err(format!(
            "the largest bright region covers {:.1}% of the image (at least {:.0}% expected): no hand found",
            100.0 * frac,
            100.0 * MIN_AREA
        ));
    }
    if frac > MAX_AREA {
        return Err(format!(
            "{:.0}% of the image is one bright region: no background to find the hand against",
            100.0 * frac
        ));
    }
    let [y0, x0, y1, x1] = bbox[l];
    let fill = area[l] as f64 / ((y1 - y0 + 1) as f64 * (x1 - x0 + 1) as f64);
    let px = |v: u32| (v as f64 / scale).round() as u32;
    let (top, left) = (px(y0).min(img.height() - 1), px(x0).min(img.width() - 1));
    let bottom = px(y1 + 1).clamp(top + 1, img.height());
    let right = px(x1 + 1).clamp(left + 1, img.width());
    Ok(([top, left, bottom - top, right - left], fill))
}

/// The inversion check's two statistics on a small copy: the median of the outer ring (a
/// tenth of each side) minus the median of the central half, and the skewness of the
/// grey levels. A radiograph has a dark background around a brighter hand (negative
/// difference) and a few bright bone pixels over much dark background (positive skew).
pub fn polarity(img: &GrayImage) -> (i32, f64) {
    let (s_img, _) = small(img);
    let (w, h) = s_img.dimensions();
    let (bx, by) = ((w / 10).max(1), (h / 10).max(1));
    let (mut ring, mut centre) = (Vec::new(), Vec::new());
    for (x, y, p) in s_img.enumerate_pixels() {
        if x < bx || y < by || x + bx >= w || y + by >= h {
            ring.push(p.0[0]);
        } else if x >= w / 4 && x < w - w / 4 && y >= h / 4 && y < h - h / 4 {
            centre.push(p.0[0]);
        }
    }
    let median = |v: &mut Vec<u8>| {
        if v.is_empty() {
            return 0;
        }
        let k = v.len() / 2;
        *v.select_nth_unstable(k).1 as i32
    };
    let n = s_img.len() as f64;
    let mean = s_img.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = s_img
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    let skew = if var > 0.0 {
        s_img
            .iter()
            .map(|&v| ((v as f64 - mean) / var.sqrt()).powi(3))
            .sum::<f64>()
            / n
    } else {
        0.0
    };
    (median(&mut ring) - median(&mut centre), skew)
}

/// Whether the image looks inverted: its border brighter than its centre and its grey
/// levels skewed towards the bright end. Measured with `bone-age data qc
/// [--invert-first]` in docs/dicom.md: it flags 9 of the 12,611 rsna-128 radiographs (a
/// normal hand on a bright surround) and catches 96% of their inverted copies.
pub fn looks_inverted(img: &GrayImage) -> bool {
    let (difference, skew) = polarity(img);
    difference > 0 && skew < 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dark frame with a bright "hand" (palm and five fingers) at `at` [y, x], and a
    /// small bright lead marker and a text label elsewhere.
    fn radiograph(at: [u32; 2], size: [u32; 2]) -> GrayImage {
        let [y0, x0] = at;
        GrayImage::from_fn(size[1], size[0], |x, y| {
            let palm = x >= x0 && x < x0 + 160 && y >= y0 + 120 && y < y0 + 300;
            let finger = (0..5).any(|k| {
                let fx = x0 + 8 + 32 * k;
                x >= fx && x < fx + 18 && y >= y0 + 20 * (k % 3) && y < y0 + 130
            });
            let marker = (20..44).contains(&x) && (20..50).contains(&y);
            let label =
                x + 60 >= size[1] && x + 20 < size[1] && y + 40 >= size[0] && y + 30 < size[0];
            let v = if palm || finger {
                150 + ((x * 7 + y * 3) % 60) as u8
            } else if marker || label {
                250
            } else {
                15 + ((x + y) % 10) as u8
            };
            image::Luma([v])
        })
    }

    #[test]
    fn the_hand_is_found_wherever_it_lies_and_markers_are_not_it() {
        for (at, size) in [
            ([100, 120], [600, 480]),
            ([40, 300], [500, 500]),
            ([250, 30], [700, 400]),
        ] {
            let img = radiograph(at, size);
            let b = find_hand(&img, 0.05).unwrap();
            let [t, l, h, w] = b.rect;
            let (hand_top, hand_left) = (at[0], at[1]);
            assert!(t <= hand_top && l <= hand_left, "{at:?}: box {:?}", b.rect);
            assert!(
                t + h >= hand_top + 300 && l + w >= hand_left + 160,
                "{at:?}: box {:?}",
                b.rect
            );
            // Not stretched to the marker in the corner, nor to the label.
            assert!(t > 50 || l > 44, "{at:?}: the marker is in {:?}", b.rect);
            assert!(
                h < size[0] * 9 / 10 || w < size[1] * 9 / 10,
                "{at:?}: {:?}",
                b.rect
            );
        }
    }

    #[test]
    fn no_plausible_hand_says_why() {
        let empty = GrayImage::from_pixel(300, 300, image::Luma([40]));
        assert!(find_hand(&empty, 0.05).unwrap_err().contains("empty"));
        let speck = GrayImage::from_fn(300, 300, |x, y| {
            image::Luma([if x < 12 && y < 12 {
                255
            } else {
                (x % 3) as u8 * 5
            }])
        });
        assert!(
            find_hand(&speck, 0.05).unwrap_err().contains("no hand"),
            "{:?}",
            find_hand(&speck, 0.05)
        );
        // Bright from edge to edge (no background): a threshold finds nothing to cut.
        let bright = GrayImage::from_fn(300, 300, |x, y| {
            image::Luma([if (140..150).contains(&x) && (140..150).contains(&y) {
                0
            } else {
                220
            }])
        });
        let why = find_hand(&bright, 0.05).unwrap_err();
        assert!(why.contains("no background"), "{why}");
    }

    #[test]
    fn an_inverted_phantom_is_flagged_and_the_original_is_not() {
        let img = radiograph([100, 120], [600, 480]);
        assert!(!looks_inverted(&img));
        let mut inverted = img.clone();
        image::imageops::invert(&mut inverted);
        assert!(looks_inverted(&inverted));
    }
}
