//! Figures of radiographs: a titled grid (id and age, or true vs predicted), the crop
//! area over a full radiograph, and a gallery of augmented training views.
use std::collections::HashMap;

use image::GrayImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::DataFrame;

use super::{font, plot_err, Plot};
use crate::augment::{self, AugmentConfig, AugmentParams};
use crate::error::Result;
use crate::evaluate::{years_months, Prediction};
use crate::transforms::{self, CropRegions, Preprocess};

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
fn draw_image<DB: DrawingBackend>(
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
    let small = transforms::resize(img, w, h)?;
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
fn fit_frame<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    [fh, fw]: [f64; 2],
) -> (f64, f64, f64) {
    let (aw, ah) = area.dim_in_pixel();
    let (aw, ah) = (aw.saturating_sub(6) as f64, ah.saturating_sub(6) as f64);
    let s = (aw / fw).min(ah / fh);
    (3.0 + (aw - fw * s) / 2.0, 3.0 + (ah - fh * s) / 2.0, s)
}

/// A radiograph decoded and shrunk so its longest side is at most [`DISPLAY_PX`].
fn load_for_display(path: &std::path::Path) -> Result<GrayImage> {
    let img = transforms::decode_gray(path, Preprocess::default().max_pixels)?;
    let s = DISPLAY_PX as f64 / img.width().max(img.height()) as f64;
    if s >= 1.0 {
        return Ok(img);
    }
    let (w, h) = (img.width() as f64 * s, img.height() as f64 * s);
    transforms::resize(&img, w.round().max(1.0) as u32, h.round().max(1.0) as u32)
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

/// The crop window (red) and the augmentation margin (yellow) over a full radiograph.
#[derive(Clone, Debug)]
pub struct CropOverlay {
    pub image: GrayImage,
    pub regions: CropRegions,
    pub title: String,
}

impl CropOverlay {
    /// The overlay of `preprocess` on the radiograph at `path`.
    pub fn of(path: &std::path::Path, preprocess: &Preprocess) -> Result<CropOverlay> {
        Ok(Self::new(
            transforms::decode_gray(path, preprocess.max_pixels)?,
            preprocess,
        ))
    }

    /// The overlay of `preprocess` on a decoded radiograph.
    pub fn new(image: GrayImage, preprocess: &Preprocess) -> CropOverlay {
        let regions = preprocess.regions([image.height(), image.width()]);
        let [oh, ow] = regions.geometry.out;
        CropOverlay {
            title: format!(
                "{}×{} radiograph: crop {:.0}×{:.0} → {oh}×{ow} network input",
                image.height(),
                image.width(),
                regions.crop[2],
                regions.crop[3]
            ),
            image,
            regions,
        }
    }
}

impl Plot for CropOverlay {
    fn size(&self) -> (u32, u32) {
        let [_, _, h, w] = self.bounds();
        (560, (560.0 * h / w) as u32 + 64)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        let inner = area.titled(&self.title, font(14.0)).map_err(plot_err)?;
        let (body, key) = inner.split_vertically(inner.dim_in_pixel().1.saturating_sub(24));
        let [top, left, h, w] = self.bounds();
        let (ox, oy, s) = fit_frame(&body, [h, w]);
        let p = |y: f64, x: f64| {
            (
                (ox + (x - left) * s).round() as i32,
                (oy + (y - top) * s).round() as i32,
            )
        };
        // Outside the radiograph the crop is zero-filled: show it black.
        body.draw(&Rectangle::new(
            [p(top, left), p(top + h, left + w)],
            BLACK.filled(),
        ))
        .map_err(plot_err)?;
        draw_image(&body, &self.image, Some(self.bounds()))?;
        for (window, colour) in [(self.regions.cached, MARGIN), (self.regions.crop, CROP)] {
            let [t, l, h, w] = window;
            body.draw(&Rectangle::new(
                [p(t, l), p(t + h, l + w)],
                colour.stroke_width(3),
            ))
            .map_err(plot_err)?;
        }
        let half = key.dim_in_pixel().0 as i32 / 2;
        key.draw_text(
            "red: the crop (network input)",
            &font(13.0).color(&CROP),
            (8, 4),
        )
        .map_err(plot_err)?;
        key.draw_text(
            "yellow: crop + margin (cached for augmentation)",
            &font(13.0).color(&RGBColor(170, 140, 0)),
            (half, 4),
        )
        .map_err(plot_err)?;
        Ok(())
    }

    fn raster_only(&self) -> bool {
        true
    }
}

const CROP: RGBColor = RGBColor(220, 30, 30);
const MARGIN: RGBColor = RGBColor(240, 200, 0);

impl CropOverlay {
    /// `[top, left, h, w]` covering the image and both windows.
    fn bounds(&self) -> [f64; 4] {
        let c = self.regions.cached;
        let (h, w) = (self.image.height() as f64, self.image.width() as f64);
        let (t, l) = (c[0].min(0.0), c[1].min(0.0));
        let (b, r) = ((c[0] + c[2]).max(h), (c[1] + c[3]).max(w));
        [t, l, b - t, r - l]
    }
}

/// The network's un-augmented input next to augmented views of the same radiograph.
#[derive(Clone, Debug)]
pub struct AugmentationGallery {
    pub grid: RadiographGrid,
}

impl AugmentationGallery {
    /// `n` views of the radiograph at `path` through `preprocess`, as training sees it.
    pub fn of(
        path: &std::path::Path,
        preprocess: &Preprocess,
        config: &AugmentConfig,
        n: usize,
        seed: u64,
    ) -> Result<AugmentationGallery> {
        let out = preprocess
            .regions(transforms::dimensions(path)?)
            .geometry
            .out;
        Self::new(&preprocess.load(path)?, out, config, n, seed)
    }

    /// `n` views of a cached image (crop plus margin, as `Preprocess::load` returns),
    /// sampled from `config` with `seed`, at the network's input size `out`.
    pub fn new(
        cached: &GrayImage,
        out: [usize; 2],
        config: &AugmentConfig,
        n: usize,
        seed: u64,
    ) -> Result<AugmentationGallery> {
        let views = augment::samples(cached, out, config, n, seed)?;
        // The plain input is the centred window, as `augment::center_crop` takes it.
        let (h, w) = (out[0] as u32, out[1] as u32);
        let (top, left) = ((cached.height() - h) / 2, (cached.width() - w) / 2);
        let plain = Tile {
            image: image::imageops::crop_imm(cached, left, top, w, h).to_image(),
            title: "input, no augmentation".into(),
        };
        let tiles = std::iter::once(plain)
            .chain(views.into_iter().map(|(p, image)| Tile {
                title: describe(&p),
                image,
            }))
            .collect();
        let mut grid = RadiographGrid::new(tiles, 4);
        grid.title = Some("Augmented training views".into());
        Ok(AugmentationGallery { grid })
    }
}

/// "rot +3.1° ×1.02 γ 0.91" plus the shift in percent.
fn describe(p: &AugmentParams) -> String {
    format!(
        "rot {:+.1}° ×{:.2} γ {:.2} ({:+.0}%, {:+.0}%)",
        p.angle_deg,
        p.scale,
        p.gamma,
        // `+ 0.0` turns a rounded −0 into +0.
        (100.0 * p.shift[0]).round() + 0.0,
        (100.0 * p.shift[1]).round() + 0.0
    )
}

impl Plot for AugmentationGallery {
    fn size(&self) -> (u32, u32) {
        self.grid.size()
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> Result<()> {
        self.grid.draw(area)
    }

    fn raster_only(&self) -> bool {
        true
    }
}
