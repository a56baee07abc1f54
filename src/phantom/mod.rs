//! Synthetic hand-radiograph phantoms: the built-in default data, no download needed.
//!
//! Each image is drawn procedurally from its bone age and sex: soft tissue, radius and
//! ulna, eight carpal bones, five metacarpals, fourteen phalanges and their epiphyses.
//! Maturation follows the atlas: carpals ossify one by one (capitate first, pisiform
//! last), epiphyses appear, then narrow and fuse at puberty (girls earlier), and bones
//! lengthen. Placement, noise and contrast vary, and every image's mean and spread of
//! brightness are drawn independently of age, so no global statistic gives the age away.
//! Output is the recipe layout, so every other path treats it as real data.
use std::io::Write;
use std::path::Path;

use indicatif::ParallelProgressIterator;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod canvas;
mod draw;

pub use draw::{age_mask, render};

/// What to generate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhantomSpec {
    /// Images in `train/` and `test/`.
    pub n_train: usize,
    pub n_test: usize,
    /// Image size [H, W].
    pub size: [u32; 2],
    pub seed: u64,
}

impl Default for PhantomSpec {
    fn default() -> Self {
        Self {
            n_train: 400,
            n_test: 100,
            size: [160, 128],
            seed: 42,
        }
    }
}

/// One phantom's label.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Subject {
    pub id: i64,
    /// Bone age in months, 1–228.
    pub boneage: f64,
    pub male: bool,
}

/// Labels drawn like the RSNA set: age ~ N(127, 41) months clipped to 1–228, 54% male.
pub fn subjects(first_id: i64, n: usize, seed: u64) -> Vec<Subject> {
    let mut rng = StdRng::seed_from_u64(seed);
    let age = Normal::<f64>::new(127.0, 41.0).expect("valid normal");
    (0..n)
        .map(|i| Subject {
            id: first_id + i as i64,
            boneage: age.sample(&mut rng).clamp(1.0, 228.0).round(),
            male: rng.random_bool(0.54),
        })
        .collect()
}

/// The subjects [`write_dataset`] draws for `split` (ids 1… in train, then test), so
/// [`render`] and [`age_mask`] can redraw any of its images.
pub fn split_subjects(spec: &PhantomSpec, split: crate::Split) -> Vec<Subject> {
    match split {
        crate::Split::Train => subjects(1, spec.n_train, spec.seed),
        crate::Split::Test => subjects(1 + spec.n_train as i64, spec.n_test, spec.seed ^ 0x7e57),
    }
}

/// Writes `train.csv` + `train/<id>.png` and `test.csv` + `test/<id>.png` under `root`.
pub fn write_dataset(root: &Path, spec: &PhantomSpec) -> Result<()> {
    for (split, n) in [
        (crate::Split::Train, spec.n_train),
        (crate::Split::Test, spec.n_test),
    ] {
        let split_name = match split {
            crate::Split::Train => "train",
            crate::Split::Test => "test",
        };
        let dir = root.join(split_name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let subjects = split_subjects(spec, split);
        subjects
            .par_iter()
            .progress_with(crate::progress::bar(
                n as u64,
                &format!("phantom {split_name}"),
            ))
            .try_for_each(|s| {
                let path = dir.join(format!("{}.png", s.id));
                render(s, spec.size, spec.seed)
                    .save(&path)
                    .map_err(|e| Error::Image {
                        path: path.clone(),
                        message: e.to_string(),
                    })
            })?;
        let csv = root.join(format!("{split_name}.csv"));
        let mut text = String::from("id,boneage,male\n");
        for s in &subjects {
            text += &format!(
                "{},{},{}\n",
                s.id,
                s.boneage,
                if s.male { "True" } else { "False" }
            );
        }
        let mut f = std::fs::File::create(&csv).map_err(|e| Error::io(&csv, e))?;
        f.write_all(text.as_bytes())
            .map_err(|e| Error::io(&csv, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use image::GrayImage;

    use super::draw::{draw_hand, maturity, ramp, CARPALS};
    use super::*;

    fn correlation(a: &[f64], b: &[f64]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
        let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
        cov / (va * vb).sqrt()
    }

    #[test]
    fn deterministic_from_the_seed() {
        let s = Subject {
            id: 7,
            boneage: 100.0,
            male: true,
        };
        assert_eq!(render(&s, [80, 64], 1), render(&s, [80, 64], 1));
        assert_ne!(render(&s, [80, 64], 1), render(&s, [80, 64], 2));
    }

    #[test]
    fn mean_brightness_does_not_give_the_age_away() {
        let subjects = subjects(1, 200, 3);
        let ages: Vec<f64> = subjects.iter().map(|s| s.boneage).collect();
        let stat = |f: &dyn Fn(&GrayImage) -> f64| -> Vec<f64> {
            subjects
                .iter()
                .map(|s| f(&render(s, [64, 52], 3)))
                .collect()
        };
        let mean = stat(&|i| i.iter().map(|&p| p as f64).sum::<f64>() / i.len() as f64);
        let r = correlation(&mean, &ages);
        assert!(r.abs() < 0.2, "mean brightness vs age: r = {r:.3}");
    }

    #[test]
    fn maturation_shows_in_the_bones() {
        // The same hand (id, seed) at different ages: bone area grows as carpals
        // ossify and bones lengthen; at the same age a girl is further along.
        let bone_area = |boneage: f64, male: bool| {
            let (canvas, _) = draw_hand(
                &Subject {
                    id: 5,
                    boneage,
                    male,
                },
                [200, 160],
                11,
            );
            canvas.px.iter().filter(|&&v| v > 0.4).count()
        };
        let areas: Vec<usize> = [6.0, 36.0, 84.0, 132.0, 180.0, 228.0]
            .iter()
            .map(|&a| bone_area(a, true))
            .collect();
        assert!(areas.windows(2).all(|w| w[0] < w[1]), "{areas:?}");
        assert!(bone_area(120.0, false) > bone_area(120.0, true));
        let carpals = |boneage: f64| {
            let t = maturity(&Subject {
                id: 1,
                boneage,
                male: true,
            });
            CARPALS.iter().filter(|c| ramp(t, c.2, 5.0) > 0.0).count()
        };
        assert_eq!((carpals(1.0), carpals(12.0), carpals(228.0)), (0, 2, 8));
    }

    #[test]
    fn the_age_mask_covers_the_bones_not_the_tissue_or_background() {
        let s = Subject {
            id: 3,
            boneage: 120.0,
            male: true,
        };
        let (canvas, _) = draw_hand(&s, [128, 128], 7);
        let mask = age_mask(&s, [128, 128], 7);
        let inside = |i: usize| mask.as_raw()[i] == 255;
        let n = canvas.px.len();
        let share = (0..n).filter(|&i| inside(i)).count() as f64 / n as f64;
        assert!((0.02..0.2).contains(&share), "mask share {share:.3}");
        // Background and soft tissue (below 0.35) are outside, apart from growth
        // plates and antialiased bone edges.
        let dark_inside = (0..n).filter(|&i| inside(i) && canvas.px[i] < 0.1).count();
        assert_eq!(dark_inside, 0, "the mask reaches the background");
        let tissue = (0..n)
            .filter(|&i| (0.15..0.3).contains(&canvas.px[i]))
            .count();
        let tissue_inside = (0..n)
            .filter(|&i| inside(i) && (0.15..0.3).contains(&canvas.px[i]))
            .count();
        assert!(tissue_inside * 5 < tissue, "{tissue_inside} of {tissue}");
        // Most dense bone is inside (the forearm shafts are not).
        let bone = (0..n).filter(|&i| canvas.px[i] > 0.5).count();
        let bone_inside = (0..n).filter(|&i| inside(i) && canvas.px[i] > 0.5).count();
        assert!(bone_inside * 2 > bone, "{bone_inside} of {bone}");
        // The image is the same with or without the mask drawn beside it.
        assert_eq!(render(&s, [128, 128], 7), render(&s, [128, 128], 7));
    }

    #[test]
    fn labels_look_like_rsna() {
        let s = subjects(1, 2000, 9);
        let mean = s.iter().map(|s| s.boneage).sum::<f64>() / 2000.0;
        let male = s.iter().filter(|s| s.male).count() as f64 / 2000.0;
        assert!((mean - 127.0).abs() < 5.0, "{mean}");
        assert!((male - 0.54).abs() < 0.04, "{male}");
        assert!(s.iter().all(|s| (1.0..=228.0).contains(&s.boneage)));
    }
}
