//! Explanation maps (`[explain]`): where in the network's input a reading comes from.
//! [`occlusion`] slides a patch of the image mean over the input and maps the change in
//! the predicted age (months); [`gradcam`] weights a convolutional block's activations by
//! the prediction's gradient (relative units). An ensemble's map is its members' mean
//! (for occlusion exactly the map of the ensemble's mean prediction). [`sanity`] holds
//! the checks that a map means something.
pub mod gradcam;
pub mod occlusion;
pub mod sanity;

use std::path::{Path, PathBuf};

use image::GrayImage;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use crate::calibration::Calibration;
use crate::error::{Error, Result};
use crate::model::{Target, M46};

/// Which map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Occlusion sensitivity: the change in the prediction, months.
    #[default]
    Occlusion,
    /// Grad-CAM on one convolutional block: relative units, maximum 1, where the
    /// activations raise the prediction.
    GradCam,
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "occlusion" => Ok(Method::Occlusion),
            "grad-cam" | "gradcam" => Ok(Method::GradCam),
            _ => Err(Error::Invalid {
                what: "explanation method".into(),
                message: format!("{s:?}: expected occlusion or grad-cam"),
            }),
        }
    }
}

/// `[explain]`: how maps are made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExplainConfig {
    pub method: Method,
    /// Occlusion patch side in input pixels; unset: an eighth of the shorter input side
    /// (16 at 128×128, 47 at 500×375).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<usize>,
    /// Occlusion stride; unset: half the patch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    /// Occluded copies per forward pass (memory, not results).
    pub batch_size: usize,
    /// Grad-CAM's block, 1–6 (6: the last convolutional block); unset: the last block
    /// whose activation is at least 10 cells across (6 at 500×375, 4 at 128×128).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    /// Regions listed as the map's top ones.
    pub top: usize,
}

impl Default for ExplainConfig {
    fn default() -> Self {
        Self {
            method: Method::Occlusion,
            patch: None,
            stride: None,
            batch_size: 32,
            layer: None,
            top: 5,
        }
    }
}

impl ExplainConfig {
    pub fn validate(&self) -> Result<()> {
        if let Some(block) = self.layer {
            gradcam::check(block)?;
        }
        for (key, v) in [
            ("explain.patch", self.patch),
            ("explain.stride", self.stride),
            ("explain.batch_size", Some(self.batch_size)),
        ] {
            if v == Some(0) {
                return Err(Error::ConfigKey {
                    key: key.into(),
                    message: "must be at least 1".into(),
                });
            }
        }
        Ok(())
    }

    /// Patch and stride for an `[H, W]` input.
    pub fn window(&self, input: [usize; 2]) -> (usize, usize) {
        let patch = self
            .patch
            .unwrap_or_else(|| (input[0].min(input[1]) as f64 / 8.0).round().max(1.0) as usize);
        (patch, self.stride.unwrap_or((patch / 2).max(1)))
    }
}

/// The map at the method's own resolution: one value per window (occlusion) or per cell
/// of the block's activation (Grad-CAM), row-major, with each one's box in the input.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Grid {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f64>,
    /// `[top, left, height, width]` in input pixels, one per value.
    pub boxes: Vec<[usize; 4]>,
}

/// One of a map's strongest regions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Region {
    /// `[top, left, height, width]` in input pixels.
    pub rect: [usize; 4],
    /// The map's value there (months for occlusion).
    pub value: f64,
}

/// A radiograph's explanation map.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub image: PathBuf,
    pub method: Method,
    /// `months` (occlusion, age), `P(male)` (occlusion, sex) or `relative` (Grad-CAM).
    pub unit: String,
    /// The prediction explained (months or P(male)): the ensemble's mean for several.
    pub prediction: f64,
    /// Members whose maps were averaged.
    pub members: usize,
    /// Occlusion: patch and stride; Grad-CAM: the block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patch: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<usize>,
    /// The network input's `[H, W]`.
    pub input_size: [usize; 2],
    pub grid: Grid,
    /// The strongest regions by |value|, not overlapping, strongest first.
    pub top: Vec<Region>,
    /// The network input view the map lies on.
    #[serde(skip)]
    pub input: GrayImage,
    /// Per input pixel, row-major.
    #[serde(skip)]
    pub map: Vec<f32>,
}

/// The map of `model` (with its checkpoint's `calibration`, on `device`) on `input`, the
/// network's input view of the radiograph at `image`.
pub fn explain_model(
    model: &M46,
    calibration: Option<Calibration>,
    device: Device,
    image: &Path,
    input: &GrayImage,
    male: Option<bool>,
    cfg: &ExplainConfig,
) -> Result<Explanation> {
    cfg.validate()?;
    if model.config.sex_input && male.is_none() {
        return Err(Error::Invalid {
            what: "explanation".into(),
            message: "this model takes sex as an input: pass --sex M or --sex F".into(),
        });
    }
    let (w, h) = input.dimensions();
    let x = crate::augment::input_tensor(input, device); // [1, 1, H, W]
    let m = crate::augment::male_tensor(male, 1, device);
    let target = model.config.target;
    let units = move |y: f64| crate::calibration::in_units(target, calibration, y);
    let prediction = units(f64::try_from(
        model.predict(&x, Some(&m)).to_kind(Kind::Double),
    )?);
    let size = [h as usize, w as usize];
    let (grid, map, patch, stride, layer, unit) = match cfg.method {
        Method::Occlusion => {
            let (patch, stride) = cfg.window(size);
            let (grid, map) =
                occlusion::occlusion(model, &x, &m, patch, stride, cfg.batch_size, &units)?;
            let unit = match target {
                Target::Age => "months",
                Target::Sex => "P(male)",
            };
            (grid, map, Some(patch), Some(stride), None, unit)
        }
        Method::GradCam => {
            let block = cfg.layer.unwrap_or_else(|| gradcam::auto_block(size));
            let (grid, map) = gradcam::grad_cam(model, &x, &m, block)?;
            (grid, map, None, None, Some(block), "relative")
        }
    };
    let top = top_regions(&grid, cfg.top);
    Ok(Explanation {
        image: image.to_path_buf(),
        method: cfg.method,
        unit: unit.into(),
        prediction,
        members: 1,
        patch,
        stride,
        layer,
        input_size: size,
        grid,
        top,
        input: input.clone(),
        map,
    })
}

/// The mean of several models' maps of one radiograph (same method and input size),
/// Grad-CAM's rescaled to a largest magnitude of 1 again; `top` regions of the mean.
pub fn mean_of(mut maps: Vec<Explanation>, top: usize) -> Result<Explanation> {
    if maps.is_empty() {
        return Err(Error::Invalid {
            what: "explanation".into(),
            message: "no maps to average".into(),
        });
    }
    let n = maps.len() as f64;
    let mut out = maps.remove(0);
    for e in &maps {
        if e.input_size != out.input_size || e.grid.values.len() != out.grid.values.len() {
            return Err(Error::Invalid {
                what: "explanation".into(),
                message: "maps of different input sizes cannot be averaged".into(),
            });
        }
        out.prediction += e.prediction;
        out.map.iter_mut().zip(&e.map).for_each(|(a, b)| *a += b);
        out.grid
            .values
            .iter_mut()
            .zip(&e.grid.values)
            .for_each(|(a, b)| *a += b);
    }
    out.prediction /= n;
    out.map.iter_mut().for_each(|v| *v /= n as f32);
    out.grid.values.iter_mut().for_each(|v| *v /= n);
    if out.method == Method::GradCam {
        let peak = out.grid.values.iter().fold(1e-12, |a, &v| v.max(a));
        out.grid.values.iter_mut().for_each(|v| *v /= peak);
        let peak = out.map.iter().fold(1e-12, |a, &v| v.max(a));
        out.map.iter_mut().for_each(|v| *v /= peak);
    }
    out.members = maps.len() + 1;
    out.top = top_regions(&out.grid, top);
    Ok(out)
}

/// The `n` strongest grid cells by |value| whose boxes do not overlap a stronger one.
pub fn top_regions(grid: &Grid, n: usize) -> Vec<Region> {
    let mut order: Vec<usize> = (0..grid.values.len()).collect();
    order.sort_by(|&a, &b| grid.values[b].abs().total_cmp(&grid.values[a].abs()));
    let overlaps = |a: &[usize; 4], b: &[usize; 4]| {
        a[0] < b[0] + b[2] && b[0] < a[0] + a[2] && a[1] < b[1] + b[3] && b[1] < a[1] + a[3]
    };
    let mut picked: Vec<Region> = Vec::new();
    for i in order {
        if picked.len() == n {
            break;
        }
        let rect = grid.boxes[i];
        if grid.values[i] != 0.0 && !picked.iter().any(|p| overlaps(&p.rect, &rect)) {
            picked.push(Region {
                rect,
                value: grid.values[i],
            });
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_windows_fit_the_input() {
        let c = ExplainConfig::default();
        assert_eq!(c.window([128, 128]), (16, 8));
        assert_eq!(c.window([500, 375]), (47, 23));
        let c = ExplainConfig {
            patch: Some(20),
            stride: Some(5),
            ..Default::default()
        };
        assert_eq!(c.window([128, 128]), (20, 5));
        assert!(ExplainConfig {
            layer: Some(7),
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!("grad-cam".parse::<Method>().is_ok() && "x".parse::<Method>().is_err());
    }

    #[test]
    fn top_regions_are_the_strongest_disjoint_ones() {
        let grid = Grid {
            rows: 1,
            cols: 4,
            values: vec![1.0, -5.0, 4.0, 2.0],
            boxes: vec![[0, 0, 4, 4], [0, 2, 4, 4], [0, 4, 4, 4], [0, 8, 4, 4]],
        };
        let top = top_regions(&grid, 3);
        let values: Vec<f64> = top.iter().map(|r| r.value).collect();
        // −5 first (by magnitude); 4 overlaps it; then 2; 1 overlaps −5 too.
        assert_eq!(values, vec![-5.0, 2.0]);
    }
}
