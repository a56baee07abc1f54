//! The canvas phantoms are drawn on: filled shapes (ellipses, capsules, polygons) in units
//! of the image height, blended by maximum with antialiased edges.

/// A filled shape, in units of the image height.
pub(super) enum Shape {
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
pub(super) struct Canvas {
    pub(super) w: usize,
    pub(super) h: usize,
    pub(super) px: Vec<f64>,
}

impl Canvas {
    pub(super) fn draw(
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
