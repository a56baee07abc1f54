//! Prediction intervals and how often they hold. An ensemble's 95% interval is CV+ (Barber, Candès, Ramdas and Tibshirani, "Predictive inference
//! with the jackknife+", Ann. Statist. 2021, §4) with signed residuals: member k's
//! out-of-fold errors `e = truth − prediction` on the fold it never saw are added to
//! member k's own predictions for the new image (each test-time-augmented pass, when TTA
//! is on), over all members, and the interval runs between the α/2 and 1 − α/2 order
//! statistics of those sums. So it widens when the members disagree or the passes
//! scatter, and its width otherwise comes from errors measured on images no member
//! predicting them had seen. [`Coverage`] counts how often truths fall inside.
use serde::{Deserialize, Serialize};

/// The nominal level of every interval.
pub const LEVEL: f64 = 0.95;

/// Age bands for coverage, in years: [0, 4), [4, 8), [8, 12), [12, 16), [16, 19).
pub const BANDS_YEARS: [(f64, f64); 5] = [
    (0.0, 4.0),
    (4.0, 8.0),
    (8.0, 12.0),
    (12.0, 16.0),
    (16.0, 19.0),
];

/// The `k`-th smallest (1-based, clamped to the sample) of `values`, reordering them.
fn order_statistic(values: &mut [f64], k: usize) -> f64 {
    let i = k.clamp(1, values.len()) - 1;
    *values.select_nth_unstable_by(i, f64::total_cmp).1
}

/// The conformal ranks of the two ends of a `level` interval among `m` values:
/// ⌊(α/2)(m + 1)⌋ and ⌈(1 − α/2)(m + 1)⌉ (clamped to 1..=m).
pub fn ranks(m: usize, level: f64) -> (usize, usize) {
    let a = (1.0 - level) / 2.0;
    let lo = (a * (m as f64 + 1.0)).floor() as usize;
    let hi = ((1.0 - a) * (m as f64 + 1.0)).ceil() as usize;
    (lo.max(1), hi.min(m.max(1)))
}

/// CV+: the `level` interval of `{p + e : p ∈ passes[k], e ∈ residuals[k]}` over members
/// k. `passes[k]` are member k's predictions for one image (one per TTA pass; all members
/// the same count), `residuals[k]` its out-of-fold errors. `None` without residuals.
pub fn cv_plus<P: AsRef<[f64]>, R: AsRef<[f64]>>(
    passes: &[P],
    residuals: &[R],
    level: f64,
) -> Option<[f64; 2]> {
    let mut sums: Vec<f64> = passes
        .iter()
        .zip(residuals)
        .flat_map(|(p, r)| {
            let r = r.as_ref();
            p.as_ref()
                .iter()
                .flat_map(move |&p| r.iter().map(move |&e| p + e))
        })
        .collect();
    if sums.is_empty() || sums.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let (lo, hi) = ranks(sums.len(), level);
    let low = order_statistic(&mut sums, lo);
    let high = order_statistic(&mut sums, hi);
    Some([low, high])
}

/// The residual quantiles `[low, high]` (at the conformal ranks) of pooled `residuals`:
/// the interval one member's prediction gets from the other folds' errors.
pub fn residual_quantiles(residuals: &[f64], level: f64) -> Option<[f64; 2]> {
    cv_plus(&[[0.0]], &[residuals], level)
}

/// The share of one band's truths inside their intervals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandCoverage {
    /// "8–12 y".
    pub band: String,
    pub images: usize,
    /// Share inside (`None` for an empty band).
    pub coverage: Option<f64>,
    /// Mean interval width, months.
    pub mean_width_months: Option<f64>,
    /// Mean of truth − prediction, months: the band's bias, which coverage alone hides.
    pub mean_error_months: Option<f64>,
}

/// How often the nominal-95% intervals held, overall and by age band.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    pub level: f64,
    pub images: usize,
    pub coverage: f64,
    pub mean_width_months: f64,
    pub bands: Vec<BandCoverage>,
}

impl Coverage {
    /// Coverage of `(truth, prediction, [low, high])` triples (months).
    pub fn of(rows: &[(f64, f64, [f64; 2])]) -> Option<Coverage> {
        if rows.is_empty() {
            return None;
        }
        let stats = |rows: &[&(f64, f64, [f64; 2])]| {
            let n = rows.len() as f64;
            let inside = rows
                .iter()
                .filter(|(t, _, [lo, hi])| (*lo..=*hi).contains(t))
                .count();
            let width = rows.iter().map(|(_, _, [lo, hi])| hi - lo).sum::<f64>() / n;
            let error = rows.iter().map(|(t, p, _)| t - p).sum::<f64>() / n;
            (inside as f64 / n, width, error)
        };
        let all: Vec<_> = rows.iter().collect();
        let (coverage, width, _) = stats(&all);
        let bands = BANDS_YEARS
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| {
                let last = i + 1 == BANDS_YEARS.len();
                let inside: Vec<_> = rows
                    .iter()
                    .filter(|(t, _, _)| *t >= a * 12.0 && (*t < b * 12.0 || last))
                    .collect();
                let s = (!inside.is_empty()).then(|| stats(&inside));
                BandCoverage {
                    band: format!("{a:.0}–{b:.0} y"),
                    images: inside.len(),
                    coverage: s.map(|s| s.0),
                    mean_width_months: s.map(|s| s.1),
                    mean_error_months: s.map(|s| s.2),
                }
            })
            .collect();
        Some(Coverage {
            level: LEVEL,
            images: rows.len(),
            coverage,
            mean_width_months: width,
            bands,
        })
    }
}

impl std::fmt::Display for Coverage {
    /// The coverage table `evaluate` and `ensemble calibrate` print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:>9}  {:>6}  {:>8}  {:>11}  {:>10}",
            "age band", "images", "coverage", "mean width", "mean error"
        )?;
        let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.1}%", v * 100.0));
        let months = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:+.1} m"));
        for b in &self.bands {
            writeln!(
                f,
                "{:>9}  {:>6}  {:>8}  {:>11}  {:>10}",
                b.band,
                b.images,
                pct(b.coverage),
                b.mean_width_months
                    .map_or("–".into(), |v| format!("{v:.1} m")),
                months(b.mean_error_months)
            )?;
        }
        write!(
            f,
            "{:>9}  {:>6}  {:>8}  {:>11}",
            "all",
            self.images,
            pct(Some(self.coverage)),
            format!("{:.1} m", self.mean_width_months)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn conformal_ranks() {
        assert_eq!(ranks(99, 0.95), (2, 98));
        assert_eq!(ranks(10, 0.95), (1, 10));
        assert_eq!(ranks(1, 0.95), (1, 1));
    }

    #[test]
    fn one_member_without_spread_adds_its_residual_quantiles() {
        let residuals: Vec<f64> = (0..199).map(|i| i as f64 - 99.0).collect(); // −99..=99
        let [lo, hi] = cv_plus(&[vec![100.0]], std::slice::from_ref(&residuals), 0.95).unwrap();
        // ranks 5 and 195 of 199: −95 and +95.
        assert_eq!([lo, hi], [5.0, 195.0]);
        assert_eq!(residual_quantiles(&residuals, 0.95).unwrap(), [-95.0, 95.0]);
        assert_eq!(cv_plus(&[vec![1.0]], &[vec![]], 0.95), None);
    }

    #[test]
    fn disagreeing_members_widen_the_interval() {
        let r: Vec<f64> = (0..99).map(|i| (i as f64 - 49.0) / 10.0).collect();
        let agree = cv_plus(&[vec![100.0], vec![100.0]], &[r.clone(), r.clone()], 0.95).unwrap();
        let apart = cv_plus(&[vec![90.0], vec![110.0]], &[r.clone(), r.clone()], 0.95).unwrap();
        assert!(
            apart[1] - apart[0] > agree[1] - agree[0] + 15.0,
            "{agree:?} {apart:?}"
        );
        // TTA passes that scatter widen it too.
        let scattered = cv_plus(&[vec![95.0, 105.0]], std::slice::from_ref(&r), 0.95).unwrap();
        let one = cv_plus(&[vec![100.0]], &[r], 0.95).unwrap();
        assert!(scattered[1] - scattered[0] > one[1] - one[0] + 5.0);
    }

    #[test]
    fn correlated_member_errors_are_covered_near_the_nominal_rate() {
        // Members trained on overlapping data share most of their error: a common part
        // (SD 10 months) and their own (SD 3). Out-of-fold residuals follow one member's
        // law; CV+ then covers a little more than 95%, as its guarantee (>= 1 − 2α) allows.
        let (common, own) = (
            Normal::new(0.0, 10.0).unwrap(),
            Normal::new(0.0, 3.0).unwrap(),
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let residuals: Vec<Vec<f64>> = (0..3)
            .map(|_| {
                (0..300)
                    .map(|_| common.sample(&mut rng) + own.sample(&mut rng))
                    .collect()
            })
            .collect();
        let rows: Vec<(f64, f64, [f64; 2])> = (0..4000)
            .map(|i| {
                let truth = (i % 228) as f64;
                let c = common.sample(&mut rng);
                let passes: Vec<Vec<f64>> = (0..3)
                    .map(|_| vec![truth - c - own.sample(&mut rng)])
                    .collect();
                let mean = passes.iter().map(|p| p[0]).sum::<f64>() / 3.0;
                (truth, mean, cv_plus(&passes, &residuals, LEVEL).unwrap())
            })
            .collect();
        let c = Coverage::of(&rows).unwrap();
        assert!((0.94..=0.985).contains(&c.coverage), "{c}");
        assert_eq!(c.bands.iter().map(|b| b.images).sum::<usize>(), 4000);
        assert!(c.to_string().contains("8–12 y"), "{c}");
    }

    #[test]
    fn independent_member_errors_make_it_conservative() {
        // The mixture adds the members' disagreement to errors that already contain it:
        // with independent member errors (SD 10) the ensemble's mean errs less (SD 5.8)
        // and CV+ covers nearly everything.
        let noise = Normal::new(0.0, 10.0).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let residuals: Vec<Vec<f64>> = (0..3)
            .map(|_| (0..300).map(|_| noise.sample(&mut rng)).collect())
            .collect();
        let rows: Vec<(f64, f64, [f64; 2])> = (0..2000)
            .map(|i| {
                let truth = (i % 228) as f64;
                let passes: Vec<Vec<f64>> = (0..3)
                    .map(|_| vec![truth - noise.sample(&mut rng)])
                    .collect();
                let mean = passes.iter().map(|p| p[0]).sum::<f64>() / 3.0;
                (truth, mean, cv_plus(&passes, &residuals, LEVEL).unwrap())
            })
            .collect();
        let c = Coverage::of(&rows).unwrap();
        assert!(c.coverage > 0.99, "{c}");
    }

    #[test]
    fn coverage_counts_by_band() {
        let rows = [
            (30.0, 30.0, [20.0, 40.0]),     // 2 y, inside
            (30.0, 50.0, [45.0, 55.0]),     // 2 y, outside
            (228.0, 220.0, [210.0, 230.0]), // 19 y: the last band includes its end
        ];
        let c = Coverage::of(&rows).unwrap();
        assert!((c.coverage - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(c.bands[0].images, 2);
        assert_eq!(c.bands[0].coverage, Some(0.5));
        assert_eq!(c.bands[0].mean_error_months, Some(-10.0));
        assert_eq!(c.bands[4].images, 1);
        assert_eq!(c.bands[2].coverage, None);
        assert_eq!(Coverage::of(&[]), None);
    }
}
