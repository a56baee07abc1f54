//! The `[folds]` stage: the training images dealt into folds, one held out for
//! validation. The recipe's contiguous folds, and a seeded, age-stratified alternative.
//! ("Split" is kept for the dataset's train/test directories, [`crate::dataset::Split`].)
use std::path::Path;

use polars::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::dataset::{self, Dataset, Layout, Split};
use crate::error::{Error, Result};

/// Which fold is held out for validation. `Default` is the recipe: fold 10 of 10.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FoldsConfig {
    /// The held-out (validation) fold, 1-based.
    #[serde(alias = "test_fold")]
    pub val_fold: usize,
    pub n_folds: usize,
    /// Rows taken part (before dealing into folds): all, male or female.
    pub sex: SexFilter,
    /// `contiguous` (the recipe) or `stratified` (by age, seeded with runtime.seed).
    pub method: FoldMethod,
}

impl Default for FoldsConfig {
    fn default() -> Self {
        Self {
            val_fold: 10,
            n_folds: 10,
            sex: SexFilter::All,
            method: FoldMethod::Contiguous,
        }
    }
}

impl FoldsConfig {
    /// An impossible fold is an error naming `folds.val_fold`.
    pub fn validate(&self) -> Result<()> {
        if self.n_folds < 2 || !(1..=self.n_folds).contains(&self.val_fold) {
            return Err(Error::ConfigKey {
                key: "folds.val_fold".into(),
                message: format!(
                    "fold {} of {}: need n_folds >= 2 and 1 <= val_fold <= n_folds",
                    self.val_fold, self.n_folds
                ),
            });
        }
        Ok(())
    }
}

/// Which rows take part, by sex; applied before splitting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SexFilter {
    #[default]
    All,
    Male,
    Female,
}

impl std::str::FromStr for SexFilter {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "all" => Ok(Self::All),
            "male" | "m" => Ok(Self::Male),
            "female" | "f" => Ok(Self::Female),
            _ => Err(Error::Invalid {
                what: "sex filter".into(),
                message: format!("{s:?}: expected all, male or female"),
            }),
        }
    }
}

/// How rows are assigned to folds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FoldMethod {
    /// The recipe: contiguous folds of ceil(n / n_folds) rows, in file order.
    #[default]
    Contiguous,
    /// Rows sorted by age, each run of `n_folds` consecutive rows dealt to the
    /// folds in a seeded random order: every fold spans the whole age range.
    Stratified,
}

/// Rows of `frame` kept by `sex`, in order.
pub fn filter_sex(frame: &DataFrame, sex: SexFilter) -> Result<DataFrame> {
    let want = match sex {
        SexFilter::All => return Ok(frame.clone()),
        SexFilter::Male => true,
        SexFilter::Female => false,
    };
    let mask: BooleanChunked = dataset::males(frame)?
        .into_iter()
        .map(|m| m == want)
        .collect();
    frame.filter(&mask).map_err(|e| Error::Frame(e.to_string()))
}

/// The fold (0-based) of each of `n` rows.
pub fn assign_folds(ages: &[f64], n_folds: usize, method: FoldMethod, seed: u64) -> Vec<usize> {
    let n = ages.len();
    match method {
        FoldMethod::Contiguous => {
            let len = n.div_ceil(n_folds).max(1);
            (0..n).map(|i| i / len).collect()
        }
        FoldMethod::Stratified => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            // Random tie-break so equal ages do not keep file order.
            let mut order: Vec<(f64, u64, usize)> = ages
                .iter()
                .enumerate()
                .map(|(i, &a)| (a, rng.random(), i))
                .collect();
            order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut folds = vec![0; n];
            let mut deal: Vec<usize> = (0..n_folds).collect();
            for (k, chunk) in order.chunks(n_folds).enumerate() {
                if k == 0 || chunk.len() == n_folds {
                    deal.shuffle(&mut rng);
                }
                for (slot, &(_, _, i)) in chunk.iter().enumerate() {
                    folds[i] = deal[slot];
                }
            }
            folds
        }
    }
}

/// Deals `frame` into folds and returns (train, validation): fold `val_fold` (1-based)
/// of `n_folds` held out, after keeping only the rows `sex` selects.
///
/// With [`FoldMethod::Contiguous`] this is exactly the recipe's split. The
/// stratified method needs a `boneage` column.
pub fn hold_out(
    frame: &DataFrame,
    folds: &FoldsConfig,
    seed: u64,
) -> Result<(DataFrame, DataFrame)> {
    folds.validate()?;
    let FoldsConfig {
        val_fold,
        n_folds,
        sex,
        method,
    } = *folds;
    let frame = filter_sex(frame, sex)?;
    let ages = match method {
        FoldMethod::Contiguous => vec![0.0; frame.height()],
        FoldMethod::Stratified => dataset::ages(&frame)?,
    };
    let assigned = assign_folds(&ages, n_folds, method, seed);
    let held: BooleanChunked = assigned.iter().map(|&f| f == val_fold - 1).collect();
    let kept: BooleanChunked = assigned.iter().map(|&f| f != val_fold - 1).collect();
    let err = |e: PolarsError| Error::Frame(e.to_string());
    Ok((
        frame.filter(&kept).map_err(err)?,
        frame.filter(&held).map_err(err)?,
    ))
}

/// The training and validation frames of `folds` over `data_dir`'s train split. Labels
/// are required when the model learns ages (`need_ages`) or the folds are stratified.
pub fn frames(
    data_dir: &Path,
    layout: Option<Layout>,
    folds: &FoldsConfig,
    seed: u64,
    need_ages: bool,
) -> Result<(DataFrame, DataFrame)> {
    let (_, ds) = Dataset::from_dir(data_dir, Split::Train, layout)?;
    if need_ages || folds.method == FoldMethod::Stratified {
        dataset::require_labels(&ds.frame, &ds.csv, "training")?;
    }
    hold_out(&ds.frame, folds, seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(
        frame: &DataFrame,
        val_fold: usize,
        n_folds: usize,
        sex: SexFilter,
        method: FoldMethod,
        seed: u64,
    ) -> Result<(DataFrame, DataFrame)> {
        let folds = FoldsConfig {
            val_fold,
            n_folds,
            sex,
            method,
        };
        hold_out(frame, &folds, seed)
    }

    fn frame(n: usize) -> DataFrame {
        df!(
            "id" => (0..n as i64).collect::<Vec<_>>(),
            "boneage" => (0..n).map(|i| ((i * 37) % 229) as f64).collect::<Vec<_>>(),
            "male" => (0..n).map(|i| i % 3 != 0).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    proptest! {
        #[test]
        fn contiguous_folds_partition_with_recipe_sizes(n in 0usize..400, k in 2usize..12) {
            let folds = assign_folds(&vec![0.0; n], k, FoldMethod::Contiguous, 0);
            let len = n.div_ceil(k).max(1);
            for f in 0..k {
                let size = folds.iter().filter(|&&x| x == f).count();
                prop_assert_eq!(size, n.saturating_sub(f * len).min(len));
            }
            prop_assert!(folds.iter().all(|&f| f < k));
            prop_assert!(folds.windows(2).all(|w| w[0] <= w[1]), "contiguous, in file order");
        }

        #[test]
        fn stratified_folds_partition_and_balance(n in 0usize..400, k in 2usize..12, seed: u64) {
            let ages: Vec<f64> = (0..n).map(|i| ((i * 7919) % 229) as f64).collect();
            let folds = assign_folds(&ages, k, FoldMethod::Stratified, seed);
            let sizes: Vec<usize> = (0..k).map(|f| folds.iter().filter(|&&x| x == f).count()).collect();
            prop_assert_eq!(sizes.iter().sum::<usize>(), n);
            prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            prop_assert_eq!(&folds, &assign_folds(&ages, k, FoldMethod::Stratified, seed));
        }

        #[test]
        fn hold_out_is_a_partition_of_the_filtered_rows(n in 1usize..200, k in 2usize..11, fold_pick in 0usize..100) {
            let f = frame(n);
            let test_fold = fold_pick % k + 1;
            for sex in [SexFilter::All, SexFilter::Male, SexFilter::Female] {
                let (train, held) = split(&f, test_fold, k, sex, FoldMethod::Contiguous, 0).unwrap();
                let kept = filter_sex(&f, sex).unwrap();
                let mut all = dataset::ids(&train).unwrap();
                all.extend(dataset::ids(&held).unwrap());
                all.sort();
                prop_assert_eq!(all, dataset::ids(&kept).unwrap());
                let len = kept.height().div_ceil(k);
                let start = (test_fold - 1) * len;
                let want: Vec<i64> = dataset::ids(&kept).unwrap().into_iter().skip(start).take(len).collect();
                prop_assert_eq!(dataset::ids(&held).unwrap(), want);
            }
        }
    }

    #[test]
    fn recipe_fold_10_of_10_is_the_tail() {
        let (train, held) = split(
            &frame(95),
            10,
            10,
            SexFilter::All,
            FoldMethod::Contiguous,
            42,
        )
        .unwrap();
        assert_eq!(held.height(), 5); // ceil(95/10) = 10: folds 1–9 have 10 rows, fold 10 has 5
        assert_eq!(dataset::ids(&held).unwrap(), vec![90, 91, 92, 93, 94]);
        assert_eq!(train.height(), 90);
    }

    #[test]
    fn sex_filter_applies_before_dealing_folds() {
        let (_, held) = split(
            &frame(30),
            1,
            2,
            SexFilter::Female,
            FoldMethod::Contiguous,
            0,
        )
        .unwrap();
        // Females are ids 0,3,...,27 (10 rows); fold 1 of 2 is the first 5.
        assert_eq!(dataset::ids(&held).unwrap(), vec![0, 3, 6, 9, 12]);
    }

    #[test]
    fn stratified_folds_span_the_age_range() {
        let ages: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let folds = assign_folds(&ages, 10, FoldMethod::Stratified, 42);
        for f in 0..10 {
            let a: Vec<f64> = ages
                .iter()
                .zip(&folds)
                .filter(|(_, &x)| x == f)
                .map(|(a, _)| *a)
                .collect();
            let mean = a.iter().sum::<f64>() / a.len() as f64;
            assert!((mean - 499.5).abs() < 10.0, "fold {f} mean age {mean}");
        }
    }

    #[test]
    fn bad_fold_numbers_are_errors() {
        for (fold, n) in [(0, 10), (11, 10), (1, 1)] {
            let e = split(
                &frame(10),
                fold,
                n,
                SexFilter::All,
                FoldMethod::Contiguous,
                0,
            )
            .unwrap_err();
            assert!(
                e.to_string().contains(&format!("fold {fold} of {n}")),
                "{e}"
            );
        }
    }
}
