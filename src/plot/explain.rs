//! An explanation map over the radiograph the network saw, with a colour bar: red where
//! the region raises the predicted age (occlusion: hiding it lowers the prediction by that
//! many months; Grad-CAM: relative units, 0–1), blue where it lowers it (occlusion only).
//! The map is transparent where it is near zero.
use plotters::coord::Shift;
use plotters::prelude::*;

use super::radiographs::fit_frame;
use super::{font, plot_err, Plot};
use crate::error::Result;
use crate::explain::{Explanation, Method};

/// The figure `bone-age explain` writes and the report embeds.
#[derive(Clone, Debug)]
pub struct ExplanationOverlay {
    pub explanation: Explanation,
    pub title: String,
}

impl ExplanationOverlay {
    pub fn new(explanation: Explanation) -> ExplanationOverlay {
        let e = &explanation;
        let name = e.image.file_name().map_or_else(
            || e.image.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let what = match e.method {
            Method::Occlusion => format!(
                "occlusion {}px/{}px",
                e.patch.unwrap_or(0),
                e.stride.unwrap_or(0)
            ),
            Method::GradCam => format!("Grad-CAM block {}", e.layer.unwrap_or(0)),
        };
        let members = if e.members > 1 {
            format!(", mean of {} models", e.members)
        } else {
            String::new()
        };
        let prediction = match e.unit.as_str() {
            "P(male)" => format!("P(male) {:.2}", e.prediction),
            _ => format!("{:.1} months", e.prediction),
        };
        ExplanationOverlay {
            title: format!("{name}: {what}{members}; prediction {prediction}"),
            explanation,
        }
    }

    /// The largest |value| of the map (the colour scale's end).
    fn limit(&self) -> f64 {
        let m = self
            .explanation
            .map
            .iter()
            .fold(0.0f32, |a, v| a.max(v.abs()));
        (m as f64).max(1e-9)
    }

    /// RGB and opacity of a map value: red above zero, blue below, opaque at the ends.
    fn colour(&self, v: f64) -> ([u8; 3], f64) {
        let t = (v / self.limit()).clamp(-1.0, 1.0);
        if t >= 0.0 {
            ([215, 48, 39], t)
        } else {
            ([33, 102, 172], -t)
        }
    }
}

impl Plot for ExplanationOverlay {
    fn size(&self) -> (u32, u32) {
        let [h, w] = self.explanation.input_size;
        let img_w = 420.0;
        (
            img_w as u32 + 130,
            (img_w * h as f64 / w as f64) as u32 + 50,
        )
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let e = &self.explanation;
        let inner = area.titled(&self.title, font(14.0)).map_err(plot_err)?;
        let (aw, _) = inner.dim_in_pixel();
        let (body, bar) = inner.split_horizontally(aw.saturating_sub(120));
        let [h, w] = e.input_size;
        let (ox, oy, s) = fit_frame(&body, [h as f64, w as f64]);
        let (dw, dh) = (
            (w as f64 * s).round().max(1.0) as u32,
            (h as f64 * s).round().max(1.0) as u32,
        );
        // Blend at the input's resolution, then scale for display.
        let mut rgb = image::RgbImage::new(w as u32, h as u32);
        for (i, px) in rgb.pixels_mut().enumerate() {
            let g = e.input.as_raw()[i] as f64;
            let (c, alpha) = self.colour(e.map[i] as f64);
            let a = 0.75 * alpha;
            *px = image::Rgb(c.map(|c| (g * (1.0 - a) + c as f64 * a).round() as u8));
        }
        let shown = image::imageops::resize(&rgb, dw, dh, image::imageops::FilterType::Triangle);
        let element = BitMapElement::with_owned_buffer(
            (ox.round() as i32, oy.round() as i32),
            (dw, dh),
            shown.into_raw(),
        )
        .expect("buffer size");
        body.draw(&element).map_err(plot_err)?;
        // The colour bar, top = the largest value.
        let (_, bh) = bar.dim_in_pixel();
        let (top, bottom) = (20i32, bh as i32 - 30);
        let (lo, hi) = match e.method {
            Method::Occlusion => (-self.limit(), self.limit()),
            Method::GradCam => (0.0, self.limit()),
        };
        let steps = 100;
        for k in 0..steps {
            let v = hi - (hi - lo) * (k as f64 + 0.5) / steps as f64;
            let (c, alpha) = self.colour(v);
            let mix = |c: u8| (255.0 * (1.0 - alpha) + c as f64 * alpha).round() as u8;
            let y0 = top + (bottom - top) * k / steps;
            let y1 = top + (bottom - top) * (k + 1) / steps;
            bar.draw(&Rectangle::new(
                [(10, y0), (30, y1.max(y0 + 1))],
                RGBColor(mix(c[0]), mix(c[1]), mix(c[2])).filled(),
            ))
            .map_err(plot_err)?;
        }
        bar.draw(&Rectangle::new(
            [(10, top), (30, bottom)],
            BLACK.stroke_width(1),
        ))
        .map_err(plot_err)?;
        for k in 0..=4 {
            let v = hi - (hi - lo) * k as f64 / 4.0;
            let y = top + (bottom - top) * k / 4;
            let label = if e.method == Method::GradCam {
                format!("{v:.2}")
            } else {
                format!("{v:+.1}")
            };
            bar.draw_text(&label, &font(12.0), (34, y - 6))
                .map_err(plot_err)?;
        }
        let unit = match (e.method, e.unit.as_str()) {
            (Method::Occlusion, "months") => "months it adds",
            (Method::Occlusion, _) => "P(male) it adds",
            (Method::GradCam, _) => "relative",
        };
        bar.draw_text(unit, &font(12.0), (4, bottom + 8))
            .map_err(plot_err)?;
        Ok(())
    }

    fn raster_only(&self) -> bool {
        true
    }
}
