//! `bone-age data qc`: the inversion check and the hand finder over every image of a
//! dataset, counted, so that what they would do to it is known before training (and how
//! often they err is measured: on real radiographs, and on inverted copies of them).
use std::path::{Path, PathBuf};

use indicatif::ParallelProgressIterator;
use rayon::prelude::*;
use serde::Serialize;

use super::hand::{find_hand, looks_inverted};
use super::{decode, Preprocess};

/// What the checks say about a set of images.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Survey {
    pub images: usize,
    /// Whether every image was inverted before the checks (to measure the detector).
    pub inverted_first: bool,
    /// Images that could not be decoded, with why.
    pub unreadable: Vec<String>,
    /// Images the inversion check flags.
    pub looks_inverted: usize,
    /// The first flagged images.
    pub inverted_examples: Vec<PathBuf>,
    /// Images in which a plausible hand was found (after the inversion check's fix).
    pub hand_found: usize,
    /// The others, with the finder's reason.
    pub hand_not_found: Vec<String>,
    /// Mean fraction of the frame the found hands' regions cover.
    pub mean_hand_area: f64,
    /// Mean fraction of the frame the crop boxes cover.
    pub mean_box_area: f64,
}

enum One {
    Unreadable(String),
    Checked {
        inverted: bool,
        hand: Result<(f64, f64), String>,
    },
}

fn check(path: &Path, pre: &Preprocess, invert_first: bool) -> One {
    let mut img = match decode(path, pre.max_pixels) {
        Ok(d) => d.image,
        Err(e) => return One::Unreadable(e.to_string()),
    };
    if invert_first {
        image::imageops::invert(&mut img);
    }
    let inverted = looks_inverted(&img);
    if inverted {
        image::imageops::invert(&mut img);
    }
    let frame = (img.width() * img.height()) as f64;
    let hand = find_hand(&img, pre.hand.margin)
        .map(|b| (b.area, (b.rect[2] * b.rect[3]) as f64 / frame))
        .map_err(|why| format!("{}: {why}", path.display()));
    One::Checked { inverted, hand }
}

/// Runs the checks on every image of `paths` in parallel, with a progress bar.
pub fn survey(paths: &[PathBuf], pre: &Preprocess, invert_first: bool) -> Survey {
    let results: Vec<(PathBuf, One)> = paths
        .par_iter()
        .progress_with(crate::progress::bar(paths.len() as u64, "qc"))
        .map(|p| (p.clone(), check(p, pre, invert_first)))
        .collect();
    let mut s = Survey {
        images: paths.len(),
        inverted_first: invert_first,
        ..Default::default()
    };
    let (mut area, mut boxes) = (0.0, 0.0);
    for (path, r) in results {
        match r {
            One::Unreadable(e) => s.unreadable.push(e),
            One::Checked { inverted, hand } => {
                if inverted {
                    s.looks_inverted += 1;
                    if s.inverted_examples.len() < 20 {
                        s.inverted_examples.push(path);
                    }
                }
                match hand {
                    Ok((a, b)) => {
                        s.hand_found += 1;
                        area += a;
                        boxes += b;
                    }
                    Err(why) => s.hand_not_found.push(why),
                }
            }
        }
    }
    let n = s.hand_found.max(1) as f64;
    (s.mean_hand_area, s.mean_box_area) = (area / n, boxes / n);
    s
}
