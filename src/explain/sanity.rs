//! Sanity checks for explanation maps (Adebayo et al., "Sanity Checks for Saliency
//! Maps", NeurIPS 2018): a map must change when the model's weights are re-initialised
//! (`Checkpoint::reinitialized`, compared by [`spearman`] rank correlation), and on
//! phantoms, whose age-bearing structures are known, it must put more of its mass on
//! them than their share of the image ([`mass_ratio`]).

/// Average ranks (1-based; ties share their mean rank).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation of `a` and `b` (Pearson's on average ranks); `None` when
/// the lengths differ or either is constant.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - ma) * (y - mb);
        va += (x - ma).powi(2);
        vb += (y - mb).powi(2);
    }
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

/// The share of the map's mass (|value|) inside `mask`, divided by the mask's share of
/// the pixels: 1 is what a map blind to the mask gets, 2 puts twice the mass there.
/// `None` for an empty map or mask.
pub fn mass_ratio(map: &[f32], mask: &[bool]) -> Option<f64> {
    let total: f64 = map.iter().map(|v| v.abs() as f64).sum();
    let area = mask.iter().filter(|&&m| m).count() as f64 / mask.len().max(1) as f64;
    if map.len() != mask.len() || total <= 0.0 || area == 0.0 {
        return None;
    }
    let inside: f64 = map
        .iter()
        .zip(mask)
        .filter(|(_, &m)| m)
        .map(|(v, _)| v.abs() as f64)
        .sum();
    Some(inside / total / area)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_is_rank_based_and_handles_ties() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let cubed: Vec<f64> = a.iter().map(|x| x * x * x).collect();
        assert!((spearman(&a, &cubed).unwrap() - 1.0).abs() < 1e-12);
        let rev: Vec<f64> = a.iter().rev().cloned().collect();
        assert!((spearman(&a, &rev).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        // A known value: x = 1..5, y = 2 1 4 3 5 gives 1 − 6·4/(5·24) = 0.8.
        assert!((spearman(&a, &[2.0, 1.0, 4.0, 3.0, 5.0]).unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(spearman(&a, &[1.0; 5]), None);
        assert_eq!(spearman(&a, &a[..4]), None);
    }

    #[test]
    fn mass_ratio_compares_mass_share_with_area_share() {
        let mask = [true, false, false, false];
        assert_eq!(mass_ratio(&[1.0, 1.0, 1.0, 1.0], &mask), Some(1.0));
        assert_eq!(mass_ratio(&[-3.0, 1.0, 0.0, 0.0], &mask), Some(3.0));
        assert_eq!(mass_ratio(&[0.0; 4], &mask), None);
        assert_eq!(mass_ratio(&[1.0; 4], &[false; 4]), None);
    }
}
