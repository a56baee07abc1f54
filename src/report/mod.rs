//! The printable report: one self-contained HTML file per reading or per patient, with
//! the radiograph, the network's input view and its explanation map, the reading table,
//! the growth chart, the model (a checkpoint or an ensemble) and its validation MAE, the
//! crate version and the research-use notice.
//! Images are embedded as data URIs and the chart as inline SVG: the page makes no
//! request, and its print style fits one reading on an A4 page.
mod batch;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use image::GrayImage;
use serde::Serialize;

use crate::ensemble::Ensemble;
use crate::error::{Error, Result};
use crate::plot::GrowthChart;
use crate::readout::Readout;

pub use batch::{run_visits, VisitOptions, VisitOutcome, VisitsSummary, READINGS_CSV};

/// The notice every report carries.
pub const NOTICE: &str = "Research use only, not a medical device.";

/// Radiographs are embedded at most this tall (pixels), to keep the file small.
pub const THUMBNAIL_HEIGHT: u32 = 480;

/// What the report says about the model that read the radiographs.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    pub checkpoint: PathBuf,
    pub epoch: usize,
    /// The checkpoint's validation MAE (months), from its sidecar.
    pub val_mae_months: Option<f64>,
    /// The bone-age version that trained it.
    pub trained_with: String,
    /// This crate's version, which read the radiographs.
    pub crate_version: String,
    /// Ensembles: the number of members (1 for a checkpoint).
    pub members: usize,
    /// K-fold ensembles: the out-of-fold MAE (months) and how often the cross-fitted 95%
    /// intervals held on the training images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oof_mae_months: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oof_coverage: Option<f64>,
}

impl ModelInfo {
    /// A checkpoint's, or an ensemble's (its run directory, the members' mean epoch and
    /// validation MAE, its out-of-fold figures).
    pub fn of(model: &Ensemble) -> ModelInfo {
        let first = model.first();
        let maes: Option<Vec<f64>> = model
            .members
            .iter()
            .map(|m| m.checkpoint.meta.metrics.val_mae_months)
            .collect();
        ModelInfo {
            checkpoint: model.root.clone().unwrap_or_else(|| first.path.clone()),
            epoch: first.meta.epoch,
            val_mae_months: maes.map(|v| v.iter().sum::<f64>() / v.len() as f64),
            trained_with: first.meta.versions.bone_age.clone(),
            crate_version: env!("CARGO_PKG_VERSION").into(),
            members: model.len(),
            oof_mae_months: model.calibration.as_ref().map(|c| c.oof_mae_months),
            oof_coverage: model.calibration.as_ref().map(|c| c.coverage.coverage),
        }
    }

    /// "checkpoint X (epoch 10, validation MAE 11.40 months; …)" for the footer.
    pub fn describe(&self) -> String {
        let mae = self
            .val_mae_months
            .map_or("not recorded".into(), |v| format!("{v:.2} months"));
        let what = if self.members > 1 {
            format!(
                "an ensemble of {} models in {} (epoch {}, mean validation MAE {mae}",
                self.members,
                self.checkpoint.display(),
                self.epoch
            )
        } else {
            format!(
                "{} (epoch {}, validation MAE {mae}",
                self.checkpoint.display(),
                self.epoch
            )
        };
        let oof = match (self.oof_mae_months, self.oof_coverage) {
            (Some(m), Some(c)) => format!(
                "; out-of-fold MAE {m:.2} months, 95% intervals held for {:.1}% of the training images",
                c * 100.0
            ),
            _ => String::new(),
        };
        format!("{what}{oof}; trained with bone-age {})", self.trained_with)
    }
}

/// One visit's reading with its images as PNG.
#[derive(Clone, Debug)]
pub struct ReportVisit {
    pub readout: Readout,
    pub radiograph_png: Vec<u8>,
    pub input_png: Vec<u8>,
    /// The explanation map over the input view, when one was made.
    pub explanation_png: Option<Vec<u8>>,
}

impl ReportVisit {
    /// The reading with the radiograph (shrunk to [`THUMBNAIL_HEIGHT`]) and the input view.
    pub fn new(readout: Readout, radiograph: &GrayImage, input: &GrayImage) -> Result<ReportVisit> {
        let (w, h) = radiograph.dimensions();
        let thumb = if h > THUMBNAIL_HEIGHT {
            let tw = ((w as f64 * THUMBNAIL_HEIGHT as f64 / h as f64).round() as u32).max(1);
            image::imageops::resize(
                radiograph,
                tw,
                THUMBNAIL_HEIGHT,
                image::imageops::FilterType::Triangle,
            )
        } else {
            radiograph.clone()
        };
        Ok(ReportVisit {
            readout,
            radiograph_png: png(&thumb)?,
            input_png: png(input)?,
            explanation_png: None,
        })
    }

    /// Adds the explanation map's figure.
    pub fn with_explanation(mut self, e: &crate::explain::Explanation) -> Result<ReportVisit> {
        let figure = crate::plot::ExplanationOverlay::new(e.clone());
        self.explanation_png = Some(crate::plot::render_png(&figure, None)?);
        Ok(self)
    }
}

/// A report: one patient's visits (or one reading), their chart and the model.
#[derive(Clone, Debug)]
pub struct Report {
    pub title: String,
    pub visits: Vec<ReportVisit>,
    pub model: ModelInfo,
}

impl Report {
    /// The growth chart of the report's visits.
    pub fn chart(&self) -> Result<GrowthChart> {
        let readouts: Vec<Readout> = self.visits.iter().map(|v| v.readout.clone()).collect();
        GrowthChart::of(&readouts, &self.title)
    }

    /// The whole page.
    pub fn html(&self) -> Result<String> {
        let chart = crate::plot::render_svg(&self.chart()?, None)?;
        let mut h = String::new();
        h.push_str(&format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Bone age: {}</title><style>{STYLE}</style></head><body>\n",
            escape(&self.title)
        ));
        h.push_str(&format!(
            "<header><h1>Bone age report: {}</h1><p class=\"notice\">{NOTICE}</p></header>\n",
            escape(&self.title)
        ));
        for v in &self.visits {
            let r = &v.readout;
            h.push_str("<section class=\"visit\">\n<div class=\"images\">");
            h.push_str(&figure(
                &v.radiograph_png,
                "radiograph",
                &file_name(&r.image),
            ));
            h.push_str(&figure(&v.input_png, "input", "the network's input"));
            if let Some(map) = &v.explanation_png {
                h.push_str(&figure(map, "explanation", "where the reading comes from"));
            }
            h.push_str("</div>\n<table>\n");
            for (k, val) in r.rows() {
                h.push_str(&format!(
                    "<tr><th>{}</th><td>{}</td></tr>\n",
                    escape(k),
                    escape(&val)
                ));
            }
            h.push_str("</table>\n");
            for w in &r.warnings {
                h.push_str(&format!(
                    "<p class=\"warning\">Warning: {}</p>\n",
                    escape(w)
                ));
            }
            h.push_str("</section>\n");
        }
        h.push_str(&format!(
            "<section class=\"chart\">{}</section>\n",
            svg_body(&chart)
        ));
        let m = &self.model;
        let maps = if self.visits.iter().any(|v| v.explanation_png.is_some()) {
            format!("<p>{}</p>", escape(MAP_NOTE))
        } else {
            String::new()
        };
        h.push_str(&format!(
            "<footer><p>Model: {}. Read by bone-age {}.</p>{maps}<p>{}</p>\
             <p class=\"notice\">{NOTICE}</p></footer>\n",
            escape(&m.describe()),
            escape(&m.crate_version),
            escape(crate::readout::POPULATION_NOTE),
        ));
        h.push_str("</body></html>\n");
        Ok(h)
    }

    /// Writes [`Report::html`] to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let html = self.html()?;
        crate::files::atomic_write(path, |tmp| {
            std::fs::write(tmp, &html).map_err(|e| Error::io(tmp, e))
        })
    }
}

/// What the report says of its explanation maps.
pub const MAP_NOTE: &str = "The third image colours the network's input by where the reading \
comes from: occlusion, by how much hiding each region changes the bone age (red: it makes \
the hand read older), or Grad-CAM. It explains the model, not the anatomy.";

/// Print on A4 (one reading to a page), screen at the same width.
const STYLE: &str = "@page{size:A4;margin:12mm}\
body{font-family:'DejaVu Sans',Arial,sans-serif;font-size:10pt;color:#111;max-width:186mm;margin:0 auto}\
h1{font-size:15pt;margin:0 0 2mm}\
.notice{font-weight:bold;color:#a00;margin:1mm 0}\
.visit{break-inside:avoid;page-break-inside:avoid;border-top:1px solid #999;padding-top:2mm;margin-bottom:2mm}\
.images{display:flex;gap:4mm;align-items:flex-end}\
figure{margin:0;text-align:center}figure img{height:48mm;border:1px solid #ccc;image-rendering:auto}\
figcaption{font-size:8pt;color:#555}\
table{border-collapse:collapse;margin-top:2mm;width:100%}\
th{text-align:left;width:45mm;padding:0.6mm 2mm;background:#f0f0f0;font-weight:normal}\
td{padding:0.6mm 2mm}tr{border-bottom:1px solid #e4e4e4}\
.warning{color:#8a5a00;margin:1mm 0}\
.chart{break-inside:avoid;page-break-inside:avoid;text-align:center}.chart svg{width:90mm;height:auto}\
footer{font-size:8pt;color:#333;border-top:1px solid #999;margin-top:2mm}";

fn png(img: &GrayImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| Error::Plot(format!("PNG encoding: {e}")))?;
    Ok(out)
}

fn figure(png: &[u8], alt: &str, caption: &str) -> String {
    format!(
        "<figure><img alt=\"{alt}\" src=\"data:image/png;base64,{}\"><figcaption>{}</figcaption></figure>",
        base64::engine::general_purpose::STANDARD.encode(png),
        escape(caption)
    )
}

/// The `<svg>` element of a plotters document (which has a viewBox, so CSS can scale it).
fn svg_body(svg: &str) -> &str {
    &svg[svg.find("<svg").unwrap_or(0)..]
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
