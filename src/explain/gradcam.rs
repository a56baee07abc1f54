//! Grad-CAM (Selvaraju et al., ICCV 2017) for a regression network: the gradient of the
//! predicted age with respect to a convolutional block's activations, averaged over
//! space, weights that block's channels; their sum, kept where positive (the regions whose
//! features raise the predicted age, the classifier's "evidence for the class"), is
//! upsampled to the input and scaled to a maximum of 1. The gradient comes from
//! `Tensor::run_backward` on the block's activation: no hooks.
//!
//! The last block is Grad-CAM's usual choice, but at small inputs it is too coarse to
//! point inside a hand (3×3 at 128×128): [`auto_block`] takes the last block whose
//! activation has at least [`MIN_CELLS`] cells on its shorter side (block 6, the last,
//! at the recipe's 500×375: 14×10; block 4 at 128×128: 15×15). On 128×128 phantoms the
//! last two blocks each fail one of the sanity checks and block 4 passes both
//! (docs/ensembles.md).
use tch::{Device, Kind, Tensor};

use super::Grid;
use crate::error::{Error, Result};
use crate::model::{pooled, CHANNELS, M46};

/// The fewest cells on the shorter side of the activation [`auto_block`] accepts.
pub const MIN_CELLS: i64 = 10;

/// The last block whose activation is at least [`MIN_CELLS`] cells on its shorter side
/// for an `[H, W]` input (block 1 when none is).
pub fn auto_block(input: [usize; 2]) -> usize {
    let (mut h, mut w) = (input[0] as i64, input[1] as i64);
    let mut best = 1;
    for block in 1..=CHANNELS.len() {
        if h.min(w) >= MIN_CELLS {
            best = block;
        }
        (h, w) = (pooled(h), pooled(w));
    }
    best
}

/// Checks a 1-based block number.
pub fn check(block: usize) -> Result<()> {
    if !(1..=CHANNELS.len()).contains(&block) {
        return Err(Error::ConfigKey {
            key: "explain.layer".into(),
            message: format!("block {block}: m46 has blocks 1 to {}", CHANNELS.len()),
        });
    }
    Ok(())
}

/// The Grad-CAM of `model` on `x` `[1, C, H, W]` at `block`: the block-resolution grid
/// (relative units, maximum 1; all zero when no region raises the prediction) and the
/// per-pixel map upsampled to `[H × W]`.
pub fn grad_cam(model: &M46, x: &Tensor, male: &Tensor, block: usize) -> Result<(Grid, Vec<f32>)> {
    check(block)?;
    let size = x.size();
    let (h, w) = (size[2], size[3]);
    let (cam, rows, cols) = tch::with_grad(|| -> Result<(Tensor, i64, i64)> {
        let (a, y) = model.forward_explained(x, Some(male), block); // a: [1, C, h, w]
        let grads = Tensor::f_run_backward(&[y.sum(Kind::Float)], &[&a], false, false)?;
        let weights = grads[0].mean_dim(&[2i64, 3][..], true, Kind::Float); // [1, C, 1, 1]
        let cam = (weights * &a)
            .sum_dim_intlist(&[1i64][..], true, Kind::Float)
            .relu(); // [1, 1, h, w]
        let s = cam.size();
        Ok((cam.detach(), s[2], s[3]))
    })?;
    let peak = f64::try_from(cam.max())?.max(1e-12);
    let cam = cam / peak;
    let up = cam.upsample_bilinear2d([h, w], false, None, None); // [1, 1, H, W]
    let to_vec = |t: &Tensor| -> Result<Vec<f64>> {
        Ok(Vec::<f64>::try_from(
            t.to_kind(Kind::Double)
                .flatten(0, -1)
                .to_device(Device::Cpu),
        )?)
    };
    let values = to_vec(&cam)?;
    let map = to_vec(&up)?.into_iter().map(|v| v as f32).collect();
    let (ch, cw) = (h as f64 / rows as f64, w as f64 / cols as f64);
    let boxes = (0..rows)
        .flat_map(|r| (0..cols).map(move |c| (r, c)))
        .map(|(r, c)| {
            let top = (r as f64 * ch).round() as usize;
            let left = (c as f64 * cw).round() as usize;
            [top, left, ch.round() as usize, cw.round() as usize]
        })
        .collect();
    Ok((
        Grid {
            rows: rows as usize,
            cols: cols as usize,
            values,
            boxes,
        },
        map,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_automatic_block_is_the_last_fine_enough_one() {
        // Blocks run at 128, 63, 31, 15, 7, 3 px (128×128); 300, 149, 74, 36, 17, 8 px;
        // and 500×375 … 30×22, 14×10.
        assert_eq!(auto_block([128, 128]), 4);
        assert_eq!(auto_block([160, 128]), 4);
        assert_eq!(auto_block([500, 375]), 6);
        assert_eq!(auto_block([300, 300]), 5);
        assert!(check(0).is_err() && check(7).is_err() && check(6).is_ok());
    }
}
