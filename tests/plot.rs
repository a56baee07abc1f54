//! Figures: each renders on the bitmap and SVG backends with the bundled font, draws
//! what it claims (colours where the data are, numbers in the captions), and refuses
//! what it cannot do with an error naming the file.
mod common;

use std::path::Path;

use base64::Engine as _;
use bone_age::augment::AugmentConfig;
use bone_age::evaluate::Prediction;
use bone_age::metrics::EpochMetrics;
use bone_age::plot::{self, Plot};
use bone_age::{Dataset, Preprocess, Split};
use image::{GrayImage, RgbImage};

/// Writes the PNG under target/plot-tests (for looking at) and returns it decoded.
fn render(name: &str, fig: &impl Plot) -> RgbImage {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plot-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.png"));
    plot::save(fig, &path, None).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(
        img.dimensions(),
        fig.size(),
        "{name}: the PNG has the figure's size"
    );
    img
}

/// Pixels close to `c` (per channel within 40).
fn count_near(img: &RgbImage, c: [u8; 3]) -> usize {
    img.pixels()
        .filter(|p| (0..3).all(|i| (p.0[i] as i32 - c[i] as i32).abs() < 40))
        .count()
}

/// Dark pixels in the rows `y0..y1`: rendered text (the font works).
fn ink_in_rows(img: &RgbImage, y0: u32, y1: u32) -> usize {
    (y0..y1)
        .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&v| v < 100))
        .count()
}

/// The largest per-pixel difference between two grey images (None when either is empty).
fn max_diff(a: &GrayImage, b: &GrayImage) -> Option<u8> {
    a.pixels()
        .zip(b.pixels())
        .map(|(p, q)| p.0[0].abs_diff(q.0[0]))
        .max()
}

fn predictions() -> Vec<Prediction> {
    // Errors of ±1, ±2 months: MAE 1.50, bias 0.
    (0..40)
        .map(|i| {
            let truth = 12.0 + 5.0 * i as f64;
            let err = [1.0, -1.0, 2.0, -2.0][i % 4];
            Prediction::new(i as i64, i % 2 == 0, Some(truth), truth + err)
        })
        .collect()
}

#[test]
fn histogram_bins_by_year_and_sex_and_draws_both_colours() {
    let fig = plot::AgeHistogram {
        ages_months: vec![0.0, 11.9, 12.0, 30.0, 30.0, 40.0],
        males: vec![false, true, true, false, true, true],
        title: "Bone age by sex".into(),
    };
    assert_eq!(fig.counts(), vec![[1, 1], [0, 1], [1, 1], [0, 1]]);
    let img = render("histogram", &fig);
    assert!(count_near(&img, [214, 39, 40]) > 200, "female bars");
    assert!(count_near(&img, [31, 119, 180]) > 200, "male bars");
    assert!(
        ink_in_rows(&img, 0, 35) > 50,
        "the caption renders with the bundled font"
    );
    let svg = plot::render_svg(&fig, None).unwrap();
    assert!(svg.contains("Bone age by sex") && svg.contains("female: n = 2"));
}

#[test]
fn scatter_and_residuals_report_mae_and_agreement_limits() {
    let preds = predictions();
    let scatter = plot::PredictionScatter {
        predictions: preds.clone(),
    };
    let img = render("scatter", &scatter);
    assert!(count_near(&img, [31, 119, 180]) > 20 && count_near(&img, [214, 39, 40]) > 20);
    let svg = plot::render_svg(&scatter, None).unwrap();
    assert!(svg.contains("MAE 1.50 months (n = 40)"), "{}", &svg[..400]);
    assert!(svg.contains("identity"));

    let residuals = plot::Residuals { predictions: preds };
    render("residuals", &residuals);
    // Residuals ±1, ±2: mean 0, SD sqrt(2.5·40/39) = 1.601, limits ±3.14.
    let svg = plot::render_svg(&residuals, None).unwrap();
    assert!(
        svg.contains("bias +0.00, limits of agreement -3.1 to +3.1 months"),
        "{}",
        svg.lines().find(|l| l.contains("bias")).unwrap_or("")
    );

    let sex_model = vec![Prediction::new(1, true, None, 0.9)];
    let err = plot::render_png(
        &plot::PredictionScatter {
            predictions: sex_model,
        },
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no labelled age predictions"), "{err}");
}

#[test]
fn training_curves_read_metrics_csv_and_name_it_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    let err = plot::TrainingCurves::read(dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("metrics.csv") && err.contains("no epochs"),
        "{err}"
    );
    let history: Vec<EpochMetrics> = (1..=5)
        .map(|e| EpochMetrics {
            epoch: e,
            train_loss: 1.0 / e as f64,
            val_loss: 1.2 / e as f64,
            val_mae_months: Some(30.0 - e as f64),
            lr: 1e-3,
            ..Default::default()
        })
        .collect();
    let fig = plot::TrainingCurves { history };
    render("curves", &fig);
    let svg = plot::render_svg(&fig, None).unwrap();
    assert!(svg.contains("Validation MAE") && svg.contains("months") && svg.contains("train"));
    let sex = plot::TrainingCurves {
        history: vec![EpochMetrics {
            epoch: 1,
            val_accuracy: Some(0.75),
            ..Default::default()
        }],
    };
    assert!(plot::render_svg(&sex, None)
        .unwrap()
        .contains("Validation accuracy"));
}

#[test]
fn save_picks_the_format_from_the_extension_and_refuses_svg_radiographs() {
    let dir = tempfile::tempdir().unwrap();
    let fig = plot::Residuals {
        predictions: predictions(),
    };
    plot::save(&fig, &dir.path().join("r.svg"), None).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("r.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<text"));
    plot::save(&fig, &dir.path().join("r.png"), Some((400, 300))).unwrap();
    assert_eq!(
        image::image_dimensions(dir.path().join("r.png")).unwrap(),
        (400, 300)
    );
    let err = plot::save(&fig, &dir.path().join("r.jpg"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("r.jpg") && err.contains(".png or .svg"),
        "{err}"
    );

    let grid = plot::RadiographGrid::new(
        vec![plot::Tile {
            image: GrayImage::new(40, 50),
            title: "t".into(),
        }],
        1,
    );
    let err = plot::save(&grid, &dir.path().join("g.svg"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("g.svg") && err.contains(".png"), "{err}");
    assert!(!dir.path().join("g.svg").exists());
}

#[test]
fn radiograph_grid_shows_the_images_under_their_titles() {
    let dir = tempfile::tempdir().unwrap();
    let root = common::recipe_dataset(dir.path(), &common::rows(12), [100, 80]);
    let (_, ds) = Dataset::from_dir(&root, Split::Train, None).unwrap();
    let tiles = plot::radiograph_tiles(&ds.frame, 6).unwrap();
    assert_eq!(tiles.len(), 6);
    // Spread over the age range: sorted by age, first tile is the youngest.
    let youngest = common::rows(12)
        .into_iter()
        .map(|r| r.1)
        .fold(f64::MAX, f64::min);
    assert!(tiles[0]
        .title
        .ends_with(&bone_age::predict::years_months(youngest)));
    assert!(tiles.windows(2).all(|w| w[0].title != w[1].title));
    let img = render("grid", &plot::RadiographGrid::new(tiles, 3));
    // The synthetic images are a gradient: many mid-grey pixels, not just white + text.
    let grey = img
        .pixels()
        .filter(|p| p.0[0] == p.0[1] && (60..200).contains(&p.0[0]))
        .count();
    assert!(grey > img.pixels().len() / 4, "{grey} grey pixels");

    let preds: Vec<Prediction> = bone_age::dataset::ids(&ds.frame)
        .unwrap()
        .into_iter()
        .map(|id| Prediction::new(id, true, Some(130.0), 121.0))
        .collect();
    let tiles = plot::prediction_tiles(&ds.frame, &preds, 4).unwrap();
    assert_eq!(tiles.len(), 4);
    assert_eq!(tiles[0].title, "true 10 y 10 m / pred 10 y 1 m");
}

#[test]
fn crop_regions_map_back_onto_the_original() {
    // The recipe on a registered 2080×1600 hand: crop 2000×1500 at (1040, 800).
    let recipe = Preprocess::default();
    let r = recipe.regions([2080, 1600]);
    assert_eq!(r.crop, [40.0, 50.0, 2000.0, 1500.0]);
    assert_eq!(r.geometry.out, [500, 375]);
    // The 10% margin: 600×451 cached pixels ↔ 2400×1804 original pixels.
    assert_eq!(r.cached, [-160.0, -102.0, 2400.0, 1804.0]);
    // A raw 2500×2000 radiograph fitted into 2080×1600: scale 0.8, 40 px padding on top.
    let fitted = Preprocess {
        fit: Some([2080, 1600]),
        ..Preprocess::default()
    };
    assert_eq!(
        fitted.regions([2500, 2000]).crop,
        [0.0, 62.5, 2500.0, 1875.0]
    );
    // The cached image is exactly the cached window of the original, resampled.
    let img = GrayImage::from_fn(200, 160, |x, y| image::Luma([((x + 2 * y) % 256) as u8]));
    let pre = Preprocess {
        crop_center: Some([90.0, 70.0]),
        crop_size: Some([100, 80]),
        scale: 1.0,
        margin: 0.1,
        ..Preprocess::default()
    };
    let r = pre.regions([160, 200]);
    assert_eq!(r.crop, [40.0, 30.0, 100.0, 80.0]);
    assert_eq!(r.cached, [30.0, 22.0, 120.0, 96.0]);
    let cached = pre.apply(&img).unwrap();
    assert_eq!(cached.dimensions(), (96, 120));
    assert_eq!(cached.get_pixel(0, 0), img.get_pixel(22, 30));
}

#[test]
fn crop_overlay_draws_both_windows_over_the_radiograph() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hand.png");
    GrayImage::from_pixel(160, 208, image::Luma([128]))
        .save(&path)
        .unwrap();
    let pre = Preprocess {
        crop_center: Some([104.0, 80.0]),
        crop_size: Some([200, 150]),
        scale: 0.5,
        ..Preprocess::default()
    };
    let fig = plot::CropOverlay::of(&path, &pre).unwrap();
    assert!(
        fig.title.contains("208×160") && fig.title.contains("100×75 network input"),
        "{}",
        fig.title
    );
    let img = render("crop", &fig);
    assert!(count_near(&img, [220, 30, 30]) > 500, "red crop window");
    assert!(
        count_near(&img, [240, 200, 0]) > 500,
        "yellow margin window"
    );
    assert!(count_near(&img, [128, 128, 128]) > 10_000, "the radiograph");
    // With the crop to the hand on, the hand's box is drawn in green, and the windows
    // are placed on the crop.
    let hand = dir.path().join("raw.png");
    GrayImage::from_fn(300, 400, |x, y| {
        image::Luma([if (80..220).contains(&x) && (100..340).contains(&y) {
            180
        } else {
            10
        }])
    })
    .save(&hand)
    .unwrap();
    let mut pre = pre.clone();
    pre.hand.crop = bone_age::preprocess::HandCrop::On;
    let fig = plot::CropOverlay::of(&hand, &pre).unwrap();
    let [t, l, h, w] = fig.hand.expect("a hand box");
    assert!(
        t <= 100.0 && l <= 80.0 && t + h >= 340.0 && l + w >= 220.0,
        "{:?}",
        fig.hand
    );
    assert!(fig.title.contains("hand"), "{}", fig.title);
    let img = render("crop-hand", &fig);
    assert!(count_near(&img, [30, 200, 60]) > 300, "green hand box");
}

#[test]
fn augmentation_gallery_starts_with_the_plain_input_and_is_seeded() {
    let cached = GrayImage::from_fn(72, 60, |x, y| image::Luma([((x * 3 + y * 2) % 256) as u8]));
    let cfg = AugmentConfig::default();
    let a = plot::AugmentationGallery::new(&cached, [60, 50], &cfg, 7, 3).unwrap();
    let b = plot::AugmentationGallery::new(&cached, [60, 50], &cfg, 7, 3).unwrap();
    assert_eq!(a.grid.tiles.len(), 8);
    // The first tile is the centre crop, untouched (up to float rounding).
    let plain = &a.grid.tiles[0].image;
    assert_eq!(plain.dimensions(), (50, 60));
    let crop = image::imageops::crop_imm(&cached, 11, 0, 50, 60).to_image(); // 72×60 → 50×60, centred
    let diff = max_diff(plain, &crop);
    assert!(diff <= Some(1), "max difference {diff:?}");
    for (ta, tb) in a.grid.tiles.iter().zip(&b.grid.tiles) {
        assert_eq!(
            (&ta.title, &ta.image),
            (&tb.title, &tb.image),
            "same seed, same views"
        );
    }
    assert!(a.grid.tiles[1..]
        .iter()
        .all(|t| t.image != *plain && t.title.starts_with("rot ")));
    render("augmentation", &a);
    let err = plot::AugmentationGallery::new(&cached, [80, 50], &cfg, 2, 3).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[test]
fn inline_png_uses_the_evcxr_display_protocol() {
    let png = plot::show(&plot::Residuals {
        predictions: predictions(),
    })
    .unwrap();
    let text = png.display_text();
    let body = text
        .strip_prefix("EVCXR_BEGIN_CONTENT image/png\n")
        .and_then(|t| t.strip_suffix("\nEVCXR_END_CONTENT"))
        .expect("markers");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    assert_eq!(bytes, png.0);
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn gallery_of_a_file_shows_the_network_input_not_the_margin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hand.png");
    let img = GrayImage::from_fn(48, 60, |x, y| image::Luma([(40 + x * 2 + y) as u8]));
    img.save(&path).unwrap();
    let pre = Preprocess {
        whole_image: true,
        scale: 1.0,
        margin: 0.1,
        ..Preprocess::default()
    };
    let g = plot::AugmentationGallery::of(&path, &pre, &AugmentConfig::default(), 2, 1).unwrap();
    let plain = &g.grid.tiles[0].image;
    assert_eq!(
        plain.dimensions(),
        (48, 60),
        "the input size, without the margin"
    );
    let diff = max_diff(plain, &img);
    assert!(diff <= Some(1), "max difference {diff:?}");
}

#[test]
fn predictions_csv_reads_back_and_bad_rows_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let eval = bone_age::evaluate::Evaluation {
        checkpoint: "x".into(),
        set: "test".into(),
        images: 40,
        target: bone_age::Target::Age,
        mae_months: Some(1.5),
        median_abs_error_months: Some(1.5),
        accuracy: None,
        tta: 0,
        calibration: None,
        out_of_range: 0,
        interval: None,
        coverage: None,
        interval_source: String::new(),
        members: Vec::new(),
        mean_spread: None,
        predictions: predictions(),
    };
    let path = dir.path().join("predictions.csv");
    bone_age::evaluate::write_predictions(&eval, &path).unwrap();
    let back = bone_age::evaluate::read_predictions(&path).unwrap();
    assert_eq!(back.len(), 40);
    assert_eq!(
        (back[3].id, back[3].boneage, back[3].predicted),
        (3, Some(27.0), 25.0)
    );
    let written = bone_age::plot::write_evaluation_plots(&eval, dir.path()).unwrap();
    assert_eq!(
        written,
        [
            dir.path().join("scatter.png"),
            dir.path().join("residuals.png")
        ]
    );

    std::fs::write(
        &path,
        "id,male,boneage,predicted\n1,true,100,99\n2,false,12x,13\n",
    )
    .unwrap();
    let err = bone_age::evaluate::read_predictions(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 3") && err.contains("\"12x\""), "{err}");
}
