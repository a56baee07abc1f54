//! Figures of radiographs: a titled grid (id and age, or true vs predicted), and the
//! image drawing that `augmentation`'s figures share.
use std::collections::HashMap;

use image::GrayImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::DataFrame;

use super::{font, plot_err, Plot};
use crate::error::Result;
use crate::evaluate::Prediction;
use crate::predict::years_months;
use crate::preprocess::{self, Preprocess};

/// Longest side kept when loading radiographs for display (full-size originals are ~2500 px).
const DISPLAY_PX: u32 = 512;

/// One titled image of a grid.
#[derive(Clone, Debug)]
pub struct Tile {
    pub image: GrayImage,
    pub title: String,
}

/// Radiographs in a grid, each with its title.
#[derive(Clone, Debug)]
pub struct RadiographGrid {
    pub tiles: Vec<Tile>,
    pub cols: usize,
    pub title: Option<String>,
    /// Width of one cell in pixels.
    pub cell_width: u32,
}

impl RadiographGrid {
    pub fn new(tiles: Vec<Tile>, cols: usize) -> RadiographGrid {
        RadiographGrid {
            tiles,
            cols: cols.max(1),
            title: None,
            cell_width: 220,
        }
    }

    /// One radiograph from a file, large, under `title` (e.g. its predicted bone age).
    pub fn single(path: &std::path::Path, title: impl Into<String>) -> Result<RadiographGrid> {
        let tile = Tile {
            image: load_for_display(path)?,
            title: title.into(),
        };
        let mut grid = RadiographGrid::new(vec![tile], 1);
        grid.cell_width = 480;
        Ok(grid)
    }

    fn rows(&self) -> usize {
        self.tiles.len().div_ceil(self.cols).max(1)
    }
}

impl Plot for RadiographGrid {
    fn size(&self) -> (u32, u32) {
        let aspect = self.tiles.first().map_or(1.25, |t| {
            t.image.height() as f64 / t.image.width().max(1) as f64
        });
        let cell_w = self.cell_width as f64;
        let cell_h = cell_w * aspect + 26.0;
        let title = if self.title.is_some() { 34.0 } else { 0.0 };
        (
            (cell_w * self.cols as f64) as u32,
            (cell_h * self.rows() as f64 + title) as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let area = match &self.title {
            Some(t) => area.titled(t, font(20.0)).map_err(plot_err)?,
            None => area.clone(),
        };
        let cells = area.split_evenly((self.rows(), self.cols));
        for (tile, cell) in self.tiles.iter().zip(&cells) {
            let size = if self.cell_width >= 400 { 18.0 } else { 13.0 };
            let inner = cell.titled(&tile.title, font(size)).map_err(plot_err)?;
            draw_image(&inner, &tile.image, None)?;
        }
        Ok(())
    }

    fn raster_only(&self) -> bool {
        true
    }
}

/// Draws `img` scaled to fit `area` with 3 px padding, centred, so that `frame`
/// (`[top, left, h, w]` in image pixels; default: the image itself) fills the area.
pub(super) fn draw_image<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    img: &GrayImage,
    frame: Option<[f64; 4]>,
) -> Result<()> {
    let [top, left, fh, fw] = frame.unwrap_or([0.0, 0.0, img.height() as f64, img.width() as f64]);
    let (ox, oy, s) = fit_frame(area, [fh, fw]);
    let (w, h) = (
        (img.width() as f64 * s).round().max(1.0) as u32,
        (img.height() as f64 * s).round().max(1.0) as u32,
    );
    let small = preprocess::resize(img, w, h)?;
    let rgb: Vec<u8> = small.as_raw().iter().flat_map(|&v| [v, v, v]).collect();
    let pos = (
        (ox - left * s).round() as i32,
        (oy - top * s).round() as i32,
    );
    let element = BitMapElement::with_owned_buffer(pos, (w, h), rgb).expect("buffer size");
    area.draw(&element).map_err(plot_err)
}

/// Where a `[h, w]` frame lands when fitted into `area` with 3 px padding, centred:
/// (offset x, offset y, scale).
pub(super) fn fit_frame<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    [fh, fw]: [f64; 2],
) -> (f64, f64, f64) {
    let (aw, ah) = area.dim_in_pixel();
    let (aw, ah) = (aw.saturating_sub(6) as f64, ah.saturating_sub(6) as f64);
    let s = (aw / fw).min(ah / fh);
    (3.0 + (aw - fw * s) / 2.0, 3.0 + (ah - fh * s) / 2.0, s)
}

/// A radiograph decoded and shrunk so its longest side is at most [`DISPLAY_PX`].
pub(super) fn load_for_display(path: &std::path::Path) -> Result<GrayImage> {
    let img = preprocess::decode_gray(path, Preprocess::default().max_pixels)?;
    let s = DISPLAY_PX as f64 / img.width().max(img.height()) as f64;
    if s >= 1.0 {
        return Ok(img);
    }
    let (w, h) = (img.width() as f64 * s, img.height() as f64 * s);
    preprocess::resize(&img, w.round().max(1.0) as u32, h.round().max(1.0) as u32)
}

/// `n` radiographs of a labelled frame spread over its age range (every
/// `len / n`-th by bone age), titled with id, sex and age in years and months.
pub fn radiograph_tiles(frame: &DataFrame, n: usize) -> Result<Vec<Tile>> {
    let (ids, ages, males, paths) = (
        crate::dataset::ids(frame)?,
        crate::dataset::ages(frame)?,
        crate::dataset::males(frame)?,
        crate::dataset::paths(frame)?,
    );
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&a, &b| ages[a].total_cmp(&ages[b]));
    let n = n.min(order.len());
    (0..n)
        .map(|k| order[k * order.len() / n])
        .map(|i| {
            Ok(Tile {
                image: load_for_display(&paths[i])?,
                title: format!(
                    "#{} · {} · {}",
                    ids[i],
                    if males[i] { "M" } else { "F" },
                    years_months(ages[i])
                ),
            })
        })
        .collect()
}

/// Tiles of the first `n` labelled predictions, titled "true … / pred …". `frame` is
/// the evaluated frame (for the image paths).
pub fn prediction_tiles(
    frame: &DataFrame,
    predictions: &[Prediction],
    n: usize,
) -> Result<Vec<Tile>> {
    let path_of: HashMap<i64, std::path::PathBuf> = crate::dataset::ids(frame)?
        .into_iter()
        .zip(crate::dataset::paths(frame)?)
        .collect();
    predictions
        .iter()
        .filter(|p| p.boneage.is_some() && path_of.contains_key(&p.id))
        .take(n)
        .map(|p| {
            Ok(Tile {
                image: load_for_display(&path_of[&p.id])?,
                title: format!(
                    "true {} / pred {}",
                    years_months(p.boneage.unwrap_or_default()),
                    years_months(p.predicted)
                ),
            })
        })
        .collect()
}
