//! Why and how sure, on phantoms: one 3-fold phantom ensemble (128×128 hands, 300
//! training and 200 test images) is trained once for this file, then
//! - its 95% intervals must cover 85–99% of the separate test split, and its out-of-fold
//!   predictions must cover the training split once;
//! - explanation maps must pass Adebayo et al.'s sanity checks: a member's map and the map
//!   of the same architecture re-initialised must not agree (Spearman), and on phantoms,
//!   whose age-bearing structures are known, the map's mass must lie on them at least
//!   twice as densely as on the image as a whole, for occlusion and Grad-CAM alike.
//!
//! Set BONE_AGE_TEST_ENSEMBLE=DIR to keep the trained ensemble in DIR and reuse it.
mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bone_age::ensemble::{self, Ensemble};
use bone_age::evaluate::EvalOptions;
use bone_age::explain::{sanity, ExplainConfig, Method};
use bone_age::predict::{self, Radiograph};
use bone_age::{Config, PhantomSpec, Split};
use tch::Device;

const SPEC: PhantomSpec = PhantomSpec {
    n_train: 450,
    n_test: 200,
    size: [128, 128],
    seed: 7,
};
const EPOCHS: usize = 10;

struct Fixture {
    _tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    data: PathBuf,
    config: Config,
    seconds: f64,
}

/// The configs/demo.toml recipe at 128×128, 3 folds of the 300 training hands.
fn config(cache: &Path) -> Config {
    let mut c = Config::load(Some(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/demo.toml"),
    ))
    .unwrap();
    c.runtime.device = bone_age::DeviceSpec::Cpu;
    c.train.epochs = EPOCHS;
    c.paths.cache_dir = Some(cache.to_path_buf());
    c
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let _turn = common::serial();
        let (tmp, dir) = match std::env::var_os("BONE_AGE_TEST_ENSEMBLE") {
            Some(d) => (None, PathBuf::from(d)),
            None => {
                let t = tempfile::tempdir().unwrap();
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let (data, root) = (dir.join("data"), dir.join("ens"));
        let config = config(&dir.join("cache"));
        let started = std::time::Instant::now();
        if !root.join(ensemble::ENSEMBLE_JSON).is_file() {
            bone_age::phantom::write_dataset(&data, &SPEC).unwrap();
            tch::manual_seed(1);
            let quiet = common::quiet();
            let resume = bone_age::TrainOptions {
                resume: true,
                ..quiet
            };
            ensemble::train_folds(&config, &data, &root, 3, None, &resume, |_, _| {}).unwrap();
            let cache = config.paths.cache_dir();
            ensemble::calibrate(&root, &data, &cache, Device::Cpu, &EvalOptions::default())
                .unwrap();
        }
        let seconds = started.elapsed().as_secs_f64();
        eprintln!("fixture: 3-fold phantom ensemble ready in {seconds:.0} s");
        Fixture {
            _tmp: tmp,
            root,
            data,
            config,
            seconds,
        }
    })
}

#[test]
fn a_3_fold_phantom_ensemble_covers_85_to_99_percent_of_the_test_split() {
    let f = fixture();
    let _turn = common::serial();
    let started = std::time::Instant::now();
    let model = Ensemble::load(std::slice::from_ref(&f.root), Device::Cpu).unwrap();
    assert_eq!(model.len(), 3);
    assert!(model.calibration.is_some(), "{:?}", model.warnings);
    let calibration = model.calibration.as_ref().unwrap();
    // The out-of-fold predictions cover the training split once.
    assert_eq!(calibration.oof_images, SPEC.n_train);
    assert_eq!(calibration.missing, 0);
    let oof = std::fs::read_to_string(f.root.join(ensemble::OOF_CSV)).unwrap();
    let mut ids: Vec<i64> = oof
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=SPEC.n_train as i64).collect::<Vec<_>>());

    let (_, test) = bone_age::Dataset::from_dir(&f.data, Split::Test, None).unwrap();
    let eval = ensemble::evaluate(
        &model,
        &test.frame,
        &f.config.paths.cache_dir(),
        &EvalOptions::default(),
    )
    .unwrap();
    let c = eval.coverage.clone().unwrap();
    eprintln!(
        "test split: ensemble MAE {:.2} (members {:?}), mean spread {:.2} months; coverage \
         {:.1}% (out-of-fold, cross-fitted: {:.1}%); fixture {:.0} s, this test {:.1} s\n{c}",
        eval.mae_months.unwrap(),
        eval.members
            .iter()
            .map(|m| m.mae_months.unwrap())
            .collect::<Vec<_>>(),
        eval.mean_spread.unwrap(),
        c.coverage * 100.0,
        calibration.coverage.coverage * 100.0,
        f.seconds,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(c.images, SPEC.n_test);
    assert!(
        (0.85..=0.99).contains(&c.coverage),
        "coverage {:.3}",
        c.coverage
    );
    // The ensemble's mean is at least as good as its average member.
    let members: f64 = eval
        .members
        .iter()
        .map(|m| m.mae_months.unwrap())
        .sum::<f64>()
        / 3.0;
    assert!(eval.mae_months.unwrap() <= members + 1e-9);
    // Every prediction carries its members and their spread.
    assert!(eval
        .predictions
        .iter()
        .all(|p| p.members.len() == 3 && p.spread.is_some()));
}

/// The first `n` test hands: each as fold-1's member sees it, and its age-bearing mask.
fn hands(model: &Ensemble, n: usize) -> Vec<(Radiograph, Vec<bool>)> {
    let f = fixture();
    let ckpt = &model.members[0].checkpoint;
    bone_age::phantom::split_subjects(&SPEC, Split::Test)
        .iter()
        .take(n)
        .map(|s| {
            let path = f.data.join("test").join(format!("{}.png", s.id));
            let rg = Radiograph::load(ckpt, &path).unwrap();
            // Whole 128×128 images: the network's input is the image itself.
            assert_eq!(rg.input.dimensions(), (128, 128));
            let mask = bone_age::phantom::age_mask(s, SPEC.size, SPEC.seed);
            (rg, mask.as_raw().iter().map(|&v| v > 0).collect())
        })
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn values(map: &[f32]) -> Vec<f64> {
    map.iter().map(|&v| v as f64).collect()
}

/// Hands the sanity checks look at: each costs three occlusion maps of 225 windows.
const IMAGES: usize = 6;

/// The two maps as `bone-age explain` makes them by default (occlusion 16/8 px; Grad-CAM
/// on block 4, the last whose activation is at least 10 cells across at 128×128), and
/// Grad-CAM on the last two blocks (3×3 and 7×7 here), reported, not checked: each fails
/// one check (docs/ensembles.md).
fn methods() -> [(&'static str, ExplainConfig, bool); 4] {
    let cam = |layer| ExplainConfig {
        method: Method::GradCam,
        layer,
        ..Default::default()
    };
    [
        ("occlusion 16/8 px", ExplainConfig::default(), true),
        ("Grad-CAM, block 4 (auto)", cam(None), true),
        ("Grad-CAM, block 5", cam(Some(5)), false),
        ("Grad-CAM, block 6 (the last)", cam(Some(6)), false),
    ]
}

/// Adebayo et al.'s model randomisation: averaged over the hands, the trained model's map
/// and the map of the same architecture re-initialised must not be strongly rank
/// correlated: Spearman ρ below 0.5, the conventional boundary of a large correlation
/// (Cohen 1988: 0.1 small, 0.3 medium, 0.5 large). A method that only traces the image's
/// bright structures (what any network's map follows) reaches it: Grad-CAM on block 5
/// scores 0.57 here. Measured for the checked maps: occlusion 0.02, Grad-CAM block 4 0.25.
const MAX_RANDOM_RHO: f64 = 0.5;

#[test]
fn explanation_maps_pass_the_sanity_checks() {
    let f = fixture();
    let _turn = common::serial();
    let model = Ensemble::load(std::slice::from_ref(&f.root), Device::Cpu).unwrap();
    let (a, b) = (&model.members[0].checkpoint, &model.members[1].checkpoint);
    let random = a.reinitialized(11).unwrap();
    let hands = hands(&model, IMAGES);
    let area = mean(
        &hands
            .iter()
            .map(|(_, m)| m.iter().filter(|&&x| x).count() as f64 / m.len() as f64)
            .collect::<Vec<_>>(),
    );
    eprintln!(
        "{IMAGES} test hands; the age-bearing mask is {:.1}% of the image",
        area * 100.0
    );
    for (name, cfg, checked) in methods() {
        let started = std::time::Instant::now();
        let (mut ratio, mut ratio_random) = (Vec::new(), Vec::new());
        let (mut rho_random, mut rho_member, mut rho_random_abs) =
            (Vec::new(), Vec::new(), Vec::new());
        for (rg, mask) in &hands {
            let ea = predict::explain(a, rg, None, &cfg).unwrap();
            let er = predict::explain(&random, rg, None, &cfg).unwrap();
            let eb = predict::explain(b, rg, None, &cfg).unwrap();
            // An empty map (no region raises the prediction) scores 0.
            ratio.push(sanity::mass_ratio(&ea.map, mask).unwrap_or(0.0));
            ratio_random.push(sanity::mass_ratio(&er.map, mask).unwrap_or(f64::NAN));
            let (ma, mr, mb) = (values(&ea.map), values(&er.map), values(&eb.map));
            rho_random.push(sanity::spearman(&ma, &mr).unwrap_or(0.0));
            rho_member.push(sanity::spearman(&ma, &mb).unwrap_or(0.0));
            let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
            rho_random_abs.push(sanity::spearman(&abs(&ma), &abs(&mr)).unwrap_or(0.0));
        }
        eprintln!(
            "{name}: mass ratio on the mask {:.2} (min {:.2}; re-initialised model {:.2}); \
             Spearman with the re-initialised model's map {:.3} (max {:.3}; of |map| {:.3}), \
             with another fold's model's {:.3}; {:.1} s",
            mean(&ratio),
            ratio.iter().cloned().fold(f64::INFINITY, f64::min),
            mean(&ratio_random),
            mean(&rho_random),
            rho_random.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            mean(&rho_random_abs),
            mean(&rho_member),
            started.elapsed().as_secs_f64()
        );
        if checked {
            assert!(mean(&ratio) >= 2.0, "{name}: mass ratios {ratio:.2?}");
            assert!(
                mean(&rho_random) < MAX_RANDOM_RHO,
                "{name}: Spearman with the re-initialised model {rho_random:.3?}"
            );
        }
    }
}
