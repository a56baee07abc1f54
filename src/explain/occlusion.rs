//! Occlusion sensitivity (Zeiler and Fergus, ECCV 2014): a square patch of the image's
//! mean slides over the network input, and each position records how much the prediction
//! drops when that part is hidden. The occluded copies run in batches.
use tch::{Device, Kind, Tensor};

use super::Grid;
use crate::error::{Error, Result};
use crate::model::M46;

/// Window starts along one side: every `stride`, and the last window flush with the edge
/// so the whole side is covered.
pub fn starts(size: usize, patch: usize, stride: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..=size - patch).step_by(stride).collect();
    if v.last() != Some(&(size - patch)) {
        v.push(size - patch);
    }
    v
}

/// Checks a patch and stride against an `[H, W]` input; the error names the values.
pub fn check(input: [usize; 2], patch: usize, stride: usize) -> Result<()> {
    let [h, w] = input;
    if patch == 0 || stride == 0 {
        return Err(Error::ConfigKey {
            key: "explain.patch".into(),
            message: format!("patch {patch} and stride {stride} must be at least 1"),
        });
    }
    if patch > h.min(w) {
        return Err(Error::ConfigKey {
            key: "explain.patch".into(),
            message: format!(
                "an occlusion patch of {patch}×{patch} is larger than the model's {h}×{w} input"
            ),
        });
    }
    Ok(())
}

/// The occlusion grid of `model` on `x` `[1, C, H, W]` (standardised): per window, the
/// prediction minus the occluded prediction, through `units` (the network's output to
/// months or P(male)); and the per-pixel map, each pixel the mean over the windows that
/// cover it, `[H × W]` row-major.
pub fn occlusion(
    model: &M46,
    x: &Tensor,
    male: &Tensor,
    patch: usize,
    stride: usize,
    batch_size: usize,
    units: &dyn Fn(f64) -> f64,
) -> Result<(Grid, Vec<f32>)> {
    let size = x.size();
    let (h, w) = (size[2] as usize, size[3] as usize);
    check([h, w], patch, stride)?;
    let (rows, cols) = (starts(h, patch, stride), starts(w, patch, stride));
    let windows: Vec<(usize, usize)> = rows
        .iter()
        .flat_map(|&r| cols.iter().map(move |&c| (r, c)))
        .collect();
    let fill = f64::try_from(x.mean(Kind::Double))?; // the image mean, standardised
    let predict = |x: &Tensor, n: i64| -> Result<Vec<f64>> {
        let m = male.expand([n, 1], false);
        let y = model.predict(x, Some(&m)).to_kind(Kind::Double);
        Ok(
            Vec::<f64>::try_from(y.flatten(0, -1).to_device(Device::Cpu))?
                .into_iter()
                .map(units)
                .collect(),
        )
    };
    let base = predict(x, 1)?[0];
    let mut deltas = Vec::with_capacity(windows.len());
    let bar = crate::progress::bar(windows.len() as u64, "occlusion");
    for chunk in windows.chunks(batch_size.max(1)) {
        let n = chunk.len() as i64;
        let batch = x.repeat([n, 1, 1, 1]); // [n, C, H, W]
        for (i, &(r, c)) in chunk.iter().enumerate() {
            let _ = batch
                .get(i as i64)
                .narrow(1, r as i64, patch as i64)
                .narrow(2, c as i64, patch as i64)
                .fill_(fill);
        }
        deltas.extend(predict(&batch, n)?.into_iter().map(|y| base - y));
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    // Each pixel: the mean change of the windows covering it.
    let (mut sum, mut count) = (vec![0.0f64; h * w], vec![0u32; h * w]);
    for (&(r, c), &d) in windows.iter().zip(&deltas) {
        for y in r..r + patch {
            for x in c..c + patch {
                sum[y * w + x] += d;
                count[y * w + x] += 1;
            }
        }
    }
    let map = sum
        .iter()
        .zip(&count)
        .map(|(s, &n)| (s / n.max(1) as f64) as f32)
        .collect();
    let grid = Grid {
        rows: rows.len(),
        cols: cols.len(),
        values: deltas,
        boxes: windows.iter().map(|&(r, c)| [r, c, patch, patch]).collect(),
    };
    Ok((grid, map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_side_and_end_flush() {
        assert_eq!(starts(128, 16, 8), (0..=112).step_by(8).collect::<Vec<_>>());
        assert_eq!(starts(10, 4, 4), vec![0, 4, 6]);
        assert_eq!(starts(5, 5, 2), vec![0]);
    }

    #[test]
    fn a_patch_larger_than_the_input_is_an_error() {
        let msg = check([128, 100], 120, 8).unwrap_err().to_string();
        assert!(msg.contains("120×120") && msg.contains("128×100"), "{msg}");
        assert!(check([128, 128], 0, 8).is_err());
        check([128, 128], 128, 8).unwrap();
    }
}
