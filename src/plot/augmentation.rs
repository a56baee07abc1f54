//! Figures of the input pipeline on one radiograph: the crop area over the full image,
//! and a gallery of seeded augmented training views.
use image::GrayImage;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::radiographs::{draw_image, fit_frame, RadiographGrid, Tile};
use super::{font, plot_err, Plot};
use crate::augment::{self, AugmentConfig, AugmentParams};
use crate::error::Result;
use crate::preprocess::{self, CropRegions, Preprocess};

/// The hand's box (green, when the preprocessing crops to it), the crop window (red) and
/// the augmentation margin (yellow) over a full radiograph.
#[derive(Clone, Debug)]
pub struct CropOverlay {
    pub image: GrayImage,
    pub regions: CropRegions,
    /// `[top, left, h, w]` of the hand found, in `image` pixels.
    pub hand: Option<[f64; 4]>,
    pub title: String,
}

impl CropOverlay {
    /// The overlay of `preprocess` on the radiograph at `path` (after its inversion check
    /// and crop to the hand, as `preprocess.hand` says for this file).
    pub fn of(path: &std::path::Path, preprocess: &Preprocess) -> Result<CropOverlay> {
        let d = preprocess::decode(path, preprocess.max_pixels)?;
        let prepared = preprocess.prepare(path, d.image.clone(), d.dicom.is_some())?;
        let mut overlay = match prepared.hand {
            None => Self::new(prepared.image, preprocess),
            Some(b) => {
                let [t, l, h, w] = b.rect.map(f64::from);
                let mut o = Self::new(prepared.image, preprocess);
                // The windows were placed on the crop: move them onto the whole image.
                for r in [&mut o.regions.crop, &mut o.regions.cached] {
                    r[0] += t;
                    r[1] += l;
                }
                let mut full = d.image;
                if prepared.inverted {
                    image::imageops::invert(&mut full);
                }
                o.image = full;
                o.hand = Some([t, l, h, w]);
                o.title = format!("{}; hand {:.0}×{:.0}", o.title, h, w);
                o
            }
        };
        if let Some(w) = prepared.warnings.first() {
            overlay.title = format!("{} ({})", overlay.title, w.split(';').next().unwrap_or(w));
        }
        Ok(overlay)
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
            hand: None,
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
        let hand = self.hand.map(|b| (b, HAND));
        for (window, colour) in [(self.regions.cached, MARGIN), (self.regions.crop, CROP)]
            .into_iter()
            .chain(hand)
        {
            let [t, l, h, w] = window;
            body.draw(&Rectangle::new(
                [p(t, l), p(t + h, l + w)],
                colour.stroke_width(3),
            ))
            .map_err(plot_err)?;
        }
        let half = key.dim_in_pixel().0 as i32 / 2;
        if self.hand.is_some() {
            key.draw_text("green: the hand found", &font(13.0).color(&HAND), (8, 4))
                .map_err(plot_err)?;
        }
        let x0 = if self.hand.is_some() { half / 2 } else { 8 };
        key.draw_text(
            "red: the crop (network input)",
            &font(13.0).color(&CROP),
            (x0, 4),
        )
        .map_err(plot_err)?;
        key.draw_text(
            "yellow: crop + margin (cached)",
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
const HAND: RGBColor = RGBColor(30, 200, 60);

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
            .regions(preprocess::dimensions(path)?)
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
