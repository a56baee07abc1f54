//! Synthetic hand-radiograph phantoms: the built-in default data, no download needed.
//!
//! Each image is drawn procedurally from its bone age and sex: soft tissue, radius and
//! ulna, eight carpal bones, five metacarpals, fourteen phalanges and their epiphyses.
//! Maturation follows the atlas: carpals ossify one by one (capitate first, pisiform
//! last), epiphyses appear, then narrow and fuse at puberty (girls earlier), and bones
//! lengthen. Placement, noise and contrast vary, and every image's mean and spread of
//! brightness are drawn independently of age, so no global statistic gives the age away.
//! Output is the recipe layout, so every other path treats it as real data.
use std::f64::consts::PI;
use std::io::Write;
use std::path::Path;

use image::GrayImage;
use indicatif::ParallelProgressIterator;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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

/// Writes `train.csv` + `train/<id>.png` and `test.csv` + `test/<id>.png` under `root`.
pub fn write_dataset(root: &Path, spec: &PhantomSpec) -> Result<()> {
    for (split, first, n, seed) in [
        ("train", 1, spec.n_train, spec.seed),
        (
            "test",
            1 + spec.n_train as i64,
            spec.n_test,
            spec.seed ^ 0x7e57,
        ),
    ] {
        let dir = root.join(split);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let subjects = subjects(first, n, seed);
        subjects
            .par_iter()
            .progress_with(crate::progress::bar(n as u64, &format!("phantom {split}")))
            .try_for_each(|s| {
                let path = dir.join(format!("{}.png", s.id));
                render(s, spec.size, spec.seed)
                    .save(&path)
                    .map_err(|e| Error::Image {
                        path: path.clone(),
                        message: e.to_string(),
                    })
            })?;
        let csv = root.join(format!("{split}.csv"));
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

/// Skeletal maturity in "boy years": girls mature about 12% faster.
fn maturity(s: &Subject) -> f64 {
    let years = s.boneage / 12.0;
    if s.male {
        years
    } else {
        years * 1.12
    }
}

/// 0 before `start`, rising smoothly to 1 over `span` years.
fn ramp(t: f64, start: f64, span: f64) -> f64 {
    ((t - start) / span).clamp(0.0, 1.0).powf(0.7)
}

enum Shape {
    /// Segment a→b with radius r.
    Capsule { a: [f64; 2], b: [f64; 2], r: f64 },
    /// Centre, radii, rotation.
    Ellipse {
        c: [f64; 2],
        rx: f64,
        ry: f64,
        rot: f64,
    },
}

impl Shape {
    /// Signed distance (negative inside), in the shape's units.
    fn sdf(&self, p: [f64; 2]) -> f64 {
        match *self {
            Shape::Capsule { a, b, r } => {
                let (pa, ba) = ([p[0] - a[0], p[1] - a[1]], [b[0] - a[0], b[1] - a[1]]);
                let h = ((pa[0] * ba[0] + pa[1] * ba[1])
                    / (ba[0] * ba[0] + ba[1] * ba[1]).max(1e-12))
                .clamp(0.0, 1.0);
                (pa[0] - ba[0] * h).hypot(pa[1] - ba[1] * h) - r
            }
            Shape::Ellipse { c, rx, ry, rot } => {
                let (s, co) = rot.sin_cos();
                let (dx, dy) = (p[0] - c[0], p[1] - c[1]);
                let (u, v) = ((dx * co + dy * s) / rx, (-dx * s + dy * co) / ry);
                (u.hypot(v) - 1.0) * rx.min(ry)
            }
        }
    }

    fn bbox(&self) -> [f64; 4] {
        match *self {
            Shape::Capsule { a, b, r } => [
                a[0].min(b[0]) - r,
                a[1].min(b[1]) - r,
                a[0].max(b[0]) + r,
                a[1].max(b[1]) + r,
            ],
            Shape::Ellipse { c, rx, ry, .. } => {
                let m = rx.max(ry);
                [c[0] - m, c[1] - m, c[0] + m, c[1] + m]
            }
        }
    }
}

/// A float canvas in units of the image height, drawn with antialiased max-blending.
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<f64>,
}

impl Canvas {
    fn draw(
        &mut self,
        shape: &Shape,
        level: f64,
        to_px: &impl Fn([f64; 2]) -> [f64; 2],
        scale: f64,
    ) {
        let bb = shape.bbox();
        let (p0, p1) = (to_px([bb[0], bb[1]]), to_px([bb[2], bb[3]]));
        let (q0, q1) = (to_px([bb[0], bb[3]]), to_px([bb[2], bb[1]]));
        let xs = [p0[0], p1[0], q0[0], q1[0]];
        let ys = [p0[1], p1[1], q0[1], q1[1]];
        let x0 = xs.iter().cloned().fold(f64::MAX, f64::min).floor().max(0.0) as usize;
        let x1 = (xs.iter().cloned().fold(f64::MIN, f64::max).ceil() as usize + 1).min(self.w);
        let y0 = ys.iter().cloned().fold(f64::MAX, f64::min).floor().max(0.0) as usize;
        let y1 = (ys.iter().cloned().fold(f64::MIN, f64::max).ceil() as usize + 1).min(self.h);
        let from_px = |x: f64, y: f64| inverse(to_px, [x, y]);
        let pixel = 1.0 / scale; // one pixel in shape units
        for y in y0..y1 {
            for x in x0..x1 {
                let d = shape.sdf(from_px(x as f64 + 0.5, y as f64 + 0.5));
                let cover = (0.5 - d / pixel).clamp(0.0, 1.0);
                if cover > 0.0 {
                    let v = &mut self.px[y * self.w + x];
                    *v = v.max(level * cover + *v * (1.0 - cover));
                }
            }
        }
    }
}

/// Inverts the similarity transform `to_px` (probe-based, exact for similarities).
fn inverse(to_px: &impl Fn([f64; 2]) -> [f64; 2], p: [f64; 2]) -> [f64; 2] {
    let o = to_px([0.0, 0.0]);
    let ex = to_px([1.0, 0.0]);
    let ey = to_px([0.0, 1.0]);
    let (a, b, c, d) = (ex[0] - o[0], ey[0] - o[0], ex[1] - o[1], ey[1] - o[1]);
    let det = a * d - b * c;
    let (dx, dy) = (p[0] - o[0], p[1] - o[1]);
    [(d * dx - b * dy) / det, (-c * dx + a * dy) / det]
}

/// Finger geometry, thumb to little finger: base offset, angle, bone lengths.
const MC_BASE: [[f64; 2]; 5] = [
    [-0.065, -0.035],
    [-0.035, -0.075],
    [-0.008, -0.08],
    [0.02, -0.075],
    [0.045, -0.065],
];
const ANGLE_DEG: [f64; 5] = [-38.0, -8.0, 0.0, 7.0, 15.0];
const MC_LEN: [f64; 5] = [0.11, 0.165, 0.16, 0.15, 0.135];
const PHAL_LEN: [[f64; 3]; 5] = [
    [0.095, 0.0, 0.065],
    [0.10, 0.06, 0.045],
    [0.11, 0.07, 0.047],
    [0.10, 0.065, 0.045],
    [0.085, 0.05, 0.04],
];
/// Carpals (capitate, hamate, triquetrum, lunate, scaphoid, trapezium, trapezoid,
/// pisiform): offset from the carpal centre, full radius, ossification age (boys).
const CARPALS: [([f64; 2], f64, f64); 8] = [
    ([0.0, -0.025], 0.022, 0.25),
    ([0.035, -0.018], 0.019, 0.4),
    ([0.045, 0.018], 0.016, 2.5),
    ([0.01, 0.03], 0.017, 3.5),
    ([-0.03, 0.025], 0.018, 5.5),
    ([-0.052, -0.02], 0.016, 5.0),
    ([-0.028, -0.035], 0.014, 5.5),
    ([0.058, 0.032], 0.010, 10.5),
];

/// Draws one phantom of `size` [H, W]; deterministic in (`subject`, `seed`).
pub fn render(subject: &Subject, size: [u32; 2], seed: u64) -> GrayImage {
    let (canvas, mut rng) = draw_hand(subject, size, seed);
    finish(canvas, &mut rng)
}

/// The noiseless drawing (tissue ≤ 0.3, bone ≥ 0.55) and the generator, whose draws so
/// far do not depend on age: the same id and seed at another age is the same hand, older.
fn draw_hand(subject: &Subject, size: [u32; 2], seed: u64) -> (Canvas, StdRng) {
    let mut rng =
        StdRng::seed_from_u64(seed ^ (subject.id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let (h, w) = (size[0] as usize, size[1] as usize);
    let t = maturity(subject);
    // Growth: bone lengths and widths, with individual variation.
    let length = (0.62 + 0.38 * (1.0 - (-t / 5.5).exp()) / (1.0 - (-18.0f64 / 5.5).exp()))
        * rng.random_range(0.95..1.05);
    let width = 1.35 * (0.55 + 0.45 * ramp(t, 0.0, 16.0)) * rng.random_range(0.92..1.08);
    let density = 0.45 + 0.4 * ramp(t, 0.0, 14.0);
    let tissue = rng.random_range(0.2..0.26);
    // Placement: zoom, rotation and shift independent of age.
    let zoom = rng.random_range(0.92..1.06) * h as f64;
    let rot = rng.random_range(-6.0f64..6.0).to_radians();
    let centre = [
        w as f64 / 2.0 + rng.random_range(-0.04..0.04) * w as f64,
        h as f64 * rng.random_range(0.6..0.66),
    ];
    let (sr, cr) = rot.sin_cos();
    let to_px = move |p: [f64; 2]| {
        [
            centre[0] + zoom * (p[0] * cr - p[1] * sr),
            centre[1] + zoom * (p[0] * sr + p[1] * cr),
        ]
    };
    let mut canvas = Canvas {
        w,
        h,
        px: vec![0.0; w * h],
    };
    let mut draw = |s: Shape, level: f64| canvas.draw(&s, level, &to_px, zoom);

    // Soft tissue: forearm, palm, fingers.
    draw(
        Shape::Capsule {
            a: [0.0, 0.05],
            b: [0.0, 0.7],
            r: 0.085,
        },
        tissue,
    );
    draw(
        Shape::Ellipse {
            c: [-0.005, -0.06 * length],
            rx: 0.095,
            ry: 0.12 * length,
            rot: 0.0,
        },
        tissue,
    );
    let mut heads = Vec::new();
    for f in 0..5 {
        let ang = ANGLE_DEG[f].to_radians();
        let dir = [ang.sin(), -ang.cos()];
        let base = [MC_BASE[f][0], MC_BASE[f][1] * length.sqrt()];
        let total: f64 = MC_LEN[f] + PHAL_LEN[f].iter().sum::<f64>();
        let tip = [
            base[0] + dir[0] * total * length,
            base[1] + dir[1] * total * length,
        ];
        draw(
            Shape::Capsule {
                a: base,
                b: tip,
                r: 0.02 * width,
            },
            tissue,
        );
        heads.push((base, dir));
    }

    // Radius and ulna with distal epiphyses (radius ~1 y, ulna ~6 y; fuse ~16.5 y).
    for (x, start, r) in [(-0.03, 1.0, 0.02), (0.035, 6.0, 0.013)] {
        let end = [x, 0.065];
        let bone = Shape::Capsule {
            a: end,
            b: [x * 1.2, 0.7],
            r: r * width,
        };
        draw(bone, density);
        epiphysis(
            &mut draw,
            end,
            [0.0, -1.0],
            r * width,
            t,
            start,
            16.5,
            density,
        );
    }
    // Carpals ossify one by one and grow.
    for (off, r, start) in CARPALS {
        let g = ramp(t, start, 5.0);
        if g > 0.0 {
            let c = [off[0] * (0.8 + 0.2 * length), off[1] * (0.8 + 0.2 * length)];
            draw(
                Shape::Ellipse {
                    c,
                    rx: 1.4 * r * g * width,
                    ry: 1.4 * r * g * width * 0.85,
                    rot: 0.3,
                },
                density,
            );
        }
    }
    // Metacarpals and phalanges, each with its epiphysis.
    for (f, &(base, dir)) in heads.iter().enumerate() {
        let mut p = base;
        let bones = [MC_LEN[f], PHAL_LEN[f][0], PHAL_LEN[f][1], PHAL_LEN[f][2]];
        for (k, &len) in bones.iter().enumerate() {
            if len == 0.0 {
                continue;
            }
            let q = [p[0] + dir[0] * len * length, p[1] + dir[1] * len * length];
            let r = [0.0105, 0.0095, 0.0085, 0.0075][k] * width;
            let gap = 0.006 * length;
            let (a, b) = (
                [p[0] + dir[0] * gap, p[1] + dir[1] * gap],
                [q[0] - dir[0] * gap, q[1] - dir[1] * gap],
            );
            draw(Shape::Capsule { a, b, r }, density);
            // Metacarpals 2–5 carry the epiphysis distally, the thumb's and phalanges proximally.
            let (at, out) = if k == 0 && f > 0 {
                (b, dir)
            } else {
                (a, [-dir[0], -dir[1]])
            };
            let appear = 1.2 + 0.3 * k as f64 + 0.15 * f as f64;
            let fuse = [14.5, 14.5, 15.0, 13.5][k];
            epiphysis(&mut draw, at, out, r, t, appear, fuse, density);
            p = q;
        }
    }
    (canvas, rng)
}

/// An epiphysis beyond `end` (outward `dir`): appears at `start`, grows, its growth
/// plate narrows over the four years before `fuse`, then it is fused to the shaft.
#[allow(clippy::too_many_arguments)]
fn epiphysis(
    draw: &mut impl FnMut(Shape, f64),
    end: [f64; 2],
    dir: [f64; 2],
    r: f64,
    t: f64,
    start: f64,
    fuse: f64,
    level: f64,
) {
    let g = ramp(t, start, 4.0);
    if g <= 0.0 {
        return;
    }
    let gap = 0.9 * r * ((fuse - t) / 4.0).clamp(0.0, 1.0);
    let (rx, ry) = (1.3 * r * (0.5 + 0.7 * g), 1.3 * r * (0.25 + 0.35 * g));
    let c = [end[0] + dir[0] * (gap + ry), end[1] + dir[1] * (gap + ry)];
    let rot = dir[1].atan2(dir[0]) + PI / 2.0;
    draw(Shape::Ellipse { c, rx, ry, rot }, level);
    if gap == 0.0 {
        draw(
            Shape::Capsule {
                a: end,
                b: c,
                r: rx * 0.9,
            },
            level,
        );
    }
}

/// Noise, then brightness and contrast drawn independently of age (a quarter of the
/// images washed out: narrow grey range, no true black), quantised to 8 bits.
fn finish(canvas: Canvas, rng: &mut StdRng) -> GrayImage {
    let noise = Normal::new(0.0, rng.random_range(0.01..0.04)).expect("valid sigma");
    let mut px = canvas.px;
    px.iter_mut().for_each(|v| *v += noise.sample(rng));
    let n = px.len() as f64;
    let mean = px.iter().sum::<f64>() / n;
    let sd = (px.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n)
        .sqrt()
        .max(1e-6);
    let (target_mean, target_sd) = if rng.random_bool(0.25) {
        (rng.random_range(120.0..170.0), rng.random_range(15.0..30.0))
    } else {
        (rng.random_range(60.0..110.0), rng.random_range(40.0..70.0))
    };
    let data = px
        .iter()
        .map(|v| {
            ((v - mean) / sd * target_sd + target_mean)
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect();
    GrayImage::from_raw(canvas.w as u32, canvas.h as u32, data).expect("canvas size")
}

#[cfg(test)]
mod tests {
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
    fn labels_look_like_rsna() {
        let s = subjects(1, 2000, 9);
        let mean = s.iter().map(|s| s.boneage).sum::<f64>() / 2000.0;
        let male = s.iter().filter(|s| s.male).count() as f64 / 2000.0;
        assert!((mean - 127.0).abs() < 5.0, "{mean}");
        assert!((male - 0.54).abs() < 0.04, "{male}");
        assert!(s.iter().all(|s| (1.0..=228.0).contains(&s.boneage)));
    }
}
