//! Drawing one phantom hand: bones as filled shapes on a canvas (soft tissue, radius and
//! ulna, carpals, metacarpals, phalanges, epiphyses), matured by bone age and sex, then
//! noise, contrast and brightness drawn independently of age.
use std::f64::consts::PI;

use image::GrayImage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::canvas::{Canvas, Shape};
use super::Subject;

/// Skeletal maturity in "boy years": girls mature about 12% faster.
pub(super) fn maturity(s: &Subject) -> f64 {
    let years = s.boneage / 12.0;
    if s.male {
        years
    } else {
        years * 1.12
    }
}

/// 0 before `start`, rising smoothly to 1 over `span` years.
pub(super) fn ramp(t: f64, start: f64, span: f64) -> f64 {
    ((t - start) / span).clamp(0.0, 1.0).powf(0.7)
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
pub(super) const CARPALS: [([f64; 2], f64, f64); 8] = [
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
    let (canvas, _, mut rng) = draw_parts(subject, size, seed, false);
    finish(canvas, &mut rng)
}

/// Where the age-bearing structures of [`render`]'s image are (255 inside, 0 outside):
/// the carpals, metacarpals, phalanges, every epiphysis (those of the radius and ulna
/// too) and the growth plates between epiphyses and shafts. Soft tissue and the radius
/// and ulna shafts are left out. The ground truth of the explanation sanity checks.
pub fn age_mask(subject: &Subject, size: [u32; 2], seed: u64) -> GrayImage {
    let (_, mask, _) = draw_parts(subject, size, seed, true);
    let mask = mask.expect("asked for");
    let data = mask
        .px
        .iter()
        .map(|&v| if v >= 0.5 { 255 } else { 0 })
        .collect();
    GrayImage::from_raw(mask.w as u32, mask.h as u32, data).expect("canvas size")
}

/// What a shape draws: soft tissue and the forearm shafts carry no maturity sign of their
/// own; bones, epiphyses and growth plates (drawn on the mask only) do.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Tissue,
    Shaft,
    Bone,
    GrowthPlate,
}

/// The noiseless drawing (tissue ≤ 0.3, bone ≥ 0.55) and the generator, whose draws so
/// far do not depend on age: the same id and seed at another age is the same hand, older.
#[cfg(test)]
pub(super) fn draw_hand(subject: &Subject, size: [u32; 2], seed: u64) -> (Canvas, StdRng) {
    let (canvas, _, rng) = draw_parts(subject, size, seed, false);
    (canvas, rng)
}

/// [`draw_hand`], and with `with_mask` the age-bearing structures on a second canvas.
fn draw_parts(
    subject: &Subject,
    size: [u32; 2],
    seed: u64,
    with_mask: bool,
) -> (Canvas, Option<Canvas>, StdRng) {
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
    let mut mask = with_mask.then(|| Canvas {
        w,
        h,
        px: vec![0.0; w * h],
    });
    let mut draw_part = |s: Shape, level: f64, part: Part| {
        if part != Part::GrowthPlate {
            canvas.draw(&s, level, &to_px, zoom);
        }
        if let Some(m) = mask
            .as_mut()
            .filter(|_| matches!(part, Part::Bone | Part::GrowthPlate))
        {
            m.draw(&s, 1.0, &to_px, zoom);
        }
    };
    let mut draw = |s: Shape, level: f64| draw_part(s, level, Part::Tissue);

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
    let draw = &mut draw_part;

    // Radius and ulna with distal epiphyses (radius ~1 y, ulna ~6 y; fuse ~16.5 y).
    for (x, start, r) in [(-0.03, 1.0, 0.02), (0.035, 6.0, 0.013)] {
        let end = [x, 0.065];
        let bone = Shape::Capsule {
            a: end,
            b: [x * 1.2, 0.7],
            r: r * width,
        };
        draw(bone, density, Part::Shaft);
        epiphysis(draw, end, [0.0, -1.0], r * width, t, start, 16.5, density);
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
                Part::Bone,
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
            draw(Shape::Capsule { a, b, r }, density, Part::Bone);
            // Metacarpals 2–5 carry the epiphysis distally, the thumb's and phalanges proximally.
            let (at, out) = if k == 0 && f > 0 {
                (b, dir)
            } else {
                (a, [-dir[0], -dir[1]])
            };
            let appear = 1.2 + 0.3 * k as f64 + 0.15 * f as f64;
            let fuse = [14.5, 14.5, 15.0, 13.5][k];
            epiphysis(draw, at, out, r, t, appear, fuse, density);
            p = q;
        }
    }
    (canvas, mask, rng)
}

/// An epiphysis beyond `end` (outward `dir`): appears at `start`, grows, its growth
/// plate narrows over the four years before `fuse`, then it is fused to the shaft.
#[allow(clippy::too_many_arguments)]
fn epiphysis(
    draw: &mut impl FnMut(Shape, f64, Part),
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
    draw(Shape::Ellipse { c, rx, ry, rot }, level, Part::Bone);
    // Fused: a bony bridge. Open: the growth plate, cartilage the image does not show.
    draw(
        Shape::Capsule {
            a: end,
            b: c,
            r: rx * 0.9,
        },
        level,
        if gap == 0.0 {
            Part::Bone
        } else {
            Part::GrowthPlate
        },
    );
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
