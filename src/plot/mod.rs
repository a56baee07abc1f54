//! Figures with plotters. Every figure implements [`Plot`], whose `draw` is generic over
//! the drawing backend: [`save`] writes PNG or SVG files (the CLI, and `train` /
//! `evaluate` into their run directories), and [`show`] returns an inline PNG that the
//! evcxr Jupyter kernel displays. Text uses a bundled DejaVu Sans subset
//! (`assets/fonts`), so no system fonts are needed.
//!
//! Charts: [`AgeHistogram`], [`TrainingCurves`], [`PredictionScatter`], [`Residuals`],
//! [`GrowthChart`].
//! Radiographs: [`RadiographGrid`], [`CropOverlay`], [`AugmentationGallery`],
//! [`ExplanationOverlay`].
mod augmentation;
mod charts;
mod evaluation;
mod explain;
mod growth;
mod radiographs;

use std::io::Cursor;
use std::path::Path;
use std::sync::Once;

use base64::Engine as _;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};

pub use augmentation::{AugmentationGallery, CropOverlay};
pub use charts::{AgeHistogram, TrainingCurves};
pub use evaluation::{write_evaluation_plots, PredictionScatter, Residuals};
pub use explain::ExplanationOverlay;
pub use growth::{GrowthChart, GrowthPoint};
pub use radiographs::{prediction_tiles, radiograph_tiles, RadiographGrid, Tile};

/// The bundled font (DejaVu Sans, Latin-1 plus a few symbols; see `assets/fonts/LICENSE`).
pub const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");
/// The family name figures use; [`register_font`] binds it to [`FONT`].
pub const FAMILY: &str = "sans-serif";

/// Sex colours, shared by every figure: female, male.
pub const FEMALE: RGBColor = RGBColor(214, 39, 40);
pub const MALE: RGBColor = RGBColor(31, 119, 180);

/// A figure that draws itself on any plotters backend.
pub trait Plot {
    /// Default size in pixels, [width, height].
    fn size(&self) -> (u32, u32);
    /// Draws onto `area` (already registered font; the area is not cleared).
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()>;
    /// Whether the figure embeds radiographs. SVG has no efficient pixel blit in
    /// plotters, so [`save`] refuses `.svg` for these instead of writing a huge file.
    fn raster_only(&self) -> bool {
        false
    }
}

/// Binds [`FAMILY`] (every style) to the bundled font; idempotent.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [
            FontStyle::Normal,
            FontStyle::Bold,
            FontStyle::Italic,
            FontStyle::Oblique,
        ] {
            plotters::style::register_font(FAMILY, style, FONT)
                .unwrap_or_else(|_| panic!("the bundled font parses"));
        }
    });
}

/// Maps a plotters drawing error into [`Error::Plot`].
pub(crate) fn plot_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> Error {
    Error::Plot(e.to_string())
}

/// Renders `plot` at `size` (default: its own) to an RGB pixel buffer.
fn render_rgb(plot: &impl Plot, size: Option<(u32, u32)>) -> Result<image::RgbImage> {
    register_font();
    let (w, h) = size.unwrap_or_else(|| plot.size());
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        plot.draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    Ok(image::RgbImage::from_raw(w, h, buf).expect("buffer matches the size"))
}

/// Renders `plot` as PNG bytes.
pub fn render_png(plot: &impl Plot, size: Option<(u32, u32)>) -> Result<Vec<u8>> {
    let img = render_rgb(plot, size)?;
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::Plot(format!("PNG encoding: {e}")))?;
    Ok(png)
}

/// Renders `plot` as an SVG document.
pub fn render_svg(plot: &impl Plot, size: Option<(u32, u32)>) -> Result<String> {
    register_font();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size.unwrap_or_else(|| plot.size()))
            .into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        plot.draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Writes `plot` to `path`: PNG or SVG by the extension, atomically.
pub fn save(plot: &impl Plot, path: &Path, size: Option<(u32, u32)>) -> Result<()> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let bytes = match ext.as_deref() {
        Some("png") => render_png(plot, size)?,
        Some("svg") if plot.raster_only() => {
            return Err(Error::Invalid {
                what: "figure path".into(),
                message: format!(
                    "{}: figures of radiographs are raster images; save them as .png",
                    path.display()
                ),
            })
        }
        Some("svg") => render_svg(plot, size)?.into_bytes(),
        _ => {
            return Err(Error::Invalid {
                what: "figure path".into(),
                message: format!("{}: expected a .png or .svg file name", path.display()),
            })
        }
    };
    crate::files::atomic_write(path, |tmp| {
        std::fs::write(tmp, &bytes).map_err(|e| Error::io(tmp, e))
    })
}

/// A rendered PNG that the evcxr kernel shows inline when a cell ends with it.
#[derive(Clone, Debug)]
pub struct Png(pub Vec<u8>);

impl Png {
    /// Called by the evcxr kernel when a cell evaluates to a `Png`: shows it inline.
    pub fn evcxr_display(&self) {
        println!("{}", self.display_text());
    }

    /// What [`Png::evcxr_display`] prints: base64 PNG between evcxr's content markers.
    pub fn display_text(&self) -> String {
        format!(
            "EVCXR_BEGIN_CONTENT image/png\n{}\nEVCXR_END_CONTENT",
            base64::engine::general_purpose::STANDARD.encode(&self.0)
        )
    }
}

/// Renders `plot` for inline display in a notebook (end a cell with `plot::show(&fig)?`).
pub fn show(plot: &impl Plot) -> Result<Png> {
    render_png(plot, None).map(Png)
}

/// A text style in the bundled family.
pub(crate) fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font())
}
