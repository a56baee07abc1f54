//! The clinical readout's outputs: the growth chart's reference band in its SVG, and the
//! HTML report: self-contained, and rendered by headless Chromium (ignored where there is
//! no browser) with the reading's numbers in its text and one A4 page when printed.
use std::path::Path;

use bone_age::explain::{Explanation, Grid, Method};
use bone_age::plot::{self, GrowthChart};
use bone_age::predict::MemberValue;
use bone_age::readout::{ChronologicalAge, Estimate, Readout, ReadoutConfig, Sex};
use bone_age::report::{ModelInfo, Report, ReportVisit};
use image::GrayImage;

fn readout(ba: f64, sex: Sex, birth: &str, exam: &str) -> Readout {
    // A 3-fold ensemble's reading: the members, their spread and the CV+ interval.
    let reading = Estimate {
        image: format!("visit-{exam}.png").into(),
        months: ba,
        calibrated: true,
        warnings: vec![],
        interval: Some([ba - 21.5, ba + 23.0]),
        interval_source: "CV+: out-of-fold residuals of 3 folds, 11358 images, and the members' \
                          spread"
            .into(),
        members: [-2.0, 0.5, 1.5]
            .iter()
            .enumerate()
            .map(|(k, d)| MemberValue {
                name: format!("fold-{}", k + 1),
                value: ba + d,
            })
            .collect(),
        spread: Some(1.80),
    };
    let age = ChronologicalAge::from_date_strings(birth, exam).unwrap();
    Readout::new(reading, sex, age, &ReadoutConfig::default()).unwrap()
}

/// An occlusion map over a 128×128 input, strongest at the carpals' place.
fn explanation(input: &GrayImage) -> Explanation {
    let map: Vec<f32> = (0..128 * 128)
        .map(|i| {
            let (y, x) = ((i / 128) as f32, (i % 128) as f32);
            12.0 * (-((y - 80.0).powi(2) + (x - 64.0).powi(2)) / 400.0).exp() - 1.0
        })
        .collect();
    Explanation {
        image: "hand.png".into(),
        method: Method::Occlusion,
        unit: "months".into(),
        prediction: 80.0,
        members: 3,
        patch: Some(16),
        stride: Some(8),
        layer: None,
        input_size: [128, 128],
        grid: Grid {
            rows: 1,
            cols: 1,
            values: vec![11.0],
            boxes: vec![[72, 56, 16, 16]],
        },
        top: vec![],
        input: input.clone(),
        map,
    }
}

/// The polygon's points, in pixels.
fn polygon(svg: &str) -> Vec<(f64, f64)> {
    let tag = &svg[svg.find("<polygon").expect("a polygon")..];
    let pts = &tag[tag.find("points=\"").unwrap() + 8..];
    pts[..pts.find('"').unwrap()]
        .split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

#[test]
fn the_growth_chart_band_is_the_reference_at_a_known_age() {
    let visits = vec![
        readout(80.0, Sex::Female, "2015-01-01", "2019-07-01"),
        readout(70.0, Sex::Female, "2015-01-01", "2018-07-01"),
    ];
    let chart = GrowthChart::of(&visits, "girl").unwrap();
    // Date order, whatever the input order.
    assert_eq!(chart.visits[0].ba_months, 70.0);
    let svg = plot::render_svg(&chart, None).unwrap();
    let band = polygon(&svg);
    // Girls: 23 ages (3–192 months), upper edge forwards then lower edge back.
    assert_eq!(band.len(), 46);
    let (up, low): (Vec<_>, Vec<_>) = (
        band[..23].to_vec(),
        band[23..].iter().rev().copied().collect(),
    );
    // Pixels per month from the band's ends, then the band at 54 months (index 10):
    // mean 60.06 ± 2 × 10.73 for girls.
    let px_x = (up[22].0 - up[0].0) / (192.0 - 3.0);
    let (hi0, hi22) = (3.02 + 2.0 * 0.72, 189.44 + 2.0 * 7.31);
    let px_y = (up[0].1 - up[22].1) / (hi22 - hi0); // SVG y grows downwards
    assert!(
        (up[10].0 - up[0].0 - 51.0 * px_x).abs() <= 1.5,
        "x at 54 months"
    );
    assert!((low[10].0 - up[10].0).abs() <= 0.5);
    let width = (low[10].1 - up[10].1) / px_y;
    assert!(
        (width - 4.0 * 10.73).abs() < 1.0,
        "band width at 54 months: {width}"
    );
    let upper = hi0 + (up[0].1 - up[10].1) / px_y;
    assert!(
        (upper - (60.06 + 2.0 * 10.73)).abs() < 1.0,
        "upper edge at 54 months: {upper}"
    );
    // The patient's visits are drawn (two dots) and the legend names the band.
    assert!(svg.contains("Greulich–Pyle mean ± 2 SD"), "legend");
    // A boy's chart runs to 204 months: 24 ages.
    let boy = GrowthChart::of(
        &[readout(100.0, Sex::Male, "2015-01-01", "2023-01-01")],
        "boy",
    )
    .unwrap();
    assert_eq!(polygon(&plot::render_svg(&boy, None).unwrap()).len(), 48);
}

fn report(dir: &Path) -> (std::path::PathBuf, Readout) {
    let r = readout(80.0, Sex::Female, "2015-01-01", "2019-07-01");
    let hand = GrayImage::from_fn(400, 520, |x, y| {
        image::Luma([((x / 3 + y / 2) % 200 + 30) as u8])
    });
    let input = GrayImage::from_fn(128, 128, |x, y| image::Luma([((x * 2 + y) % 256) as u8]));
    let model = ModelInfo {
        checkpoint: "runs/ens3".into(),
        epoch: 10,
        val_mae_months: Some(11.37),
        trained_with: "0.1.0".into(),
        crate_version: env!("CARGO_PKG_VERSION").into(),
        members: 3,
        oof_mae_months: Some(12.31),
        oof_coverage: Some(0.953),
    };
    let visit = ReportVisit::new(r.clone(), &hand, &input)
        .unwrap()
        .with_explanation(&explanation(&input))
        .unwrap();
    let path = dir.join("report.html");
    Report {
        title: "hand.png".into(),
        visits: vec![visit],
        model,
    }
    .write(&path)
    .unwrap();
    (path, r)
}

#[test]
fn the_report_is_self_contained_and_holds_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let (path, r) = report(dir.path());
    let html = std::fs::read_to_string(&path).unwrap();
    for want in [
        "Research use only, not a medical device.",
        "80.0 months",
        &format!("{:.1} months", r.chronological_age.months),
        &format!("{:+.2}", r.z.unwrap()),
        "advanced",
        "an ensemble of 3 models in runs/ens3",
        "11.37 months",
        "out-of-fold MAE 12.31 months, 95% intervals held for 95.3%",
        "fold-1 78.0, fold-2 80.5, fold-3 81.5 months; SD 1.8",
        "CV+: out-of-fold residuals of 3 folds",
        "where the reading comes from",
        "hiding each region changes the bone age",
        "Cleveland",
        "data:image/png;base64,",
        "<svg",
    ] {
        assert!(html.contains(want), "{want} missing");
    }
    // No request leaves the page: no remote sources, links, imports or fonts.
    for bad in ["src=\"http", "href=", "url(", "@import", "<script", "<link"] {
        assert!(!html.contains(bad), "{bad} in the report");
    }
    // The radiograph, the input view and the explanation map.
    assert_eq!(html.matches("data:image/png;base64,").count(), 3);
}

/// Runs headless Chromium on `args` (as root it needs --no-sandbox).
#[cfg(chromium)]
fn chromium(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("BONE_AGE_CHROMIUM"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .args(args)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
#[cfg_attr(
    not(chromium),
    ignore = "no headless Chromium (install chromium, then touch build.rs)"
)]
fn the_report_renders_in_headless_chromium_on_one_a4_page() {
    #[cfg(chromium)]
    {
        let dir = tempfile::tempdir().unwrap();
        let (path, r) = report(dir.path());
        let url = format!("file://{}", path.display());
        // A4 at 96 dpi: 794 × 1123 CSS pixels.
        let shot = dir.path().join("shot.png");
        chromium(&[
            &format!("--screenshot={}", shot.display()),
            "--window-size=794,1123",
            &url,
        ]);
        let img = image::open(&shot).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (794, 1123));
        let dark = img
            .pixels()
            .filter(|p| p.0.iter().map(|&c| c as u32).sum::<u32>() < 300)
            .count();
        let share = dark as f64 / (794.0 * 1123.0);
        assert!(
            share > 0.01,
            "the page looks blank: {share:.4} of it is dark"
        );
        // The rendered text holds the reading's numbers.
        let dom = String::from_utf8(chromium(&["--dump-dom", &url]).stdout).unwrap();
        for want in [
            "80.0 months",
            &format!("{:+.2}", r.z.unwrap()),
            "advanced",
            "not a medical device",
            "fold-2 80.5",
        ] {
            assert!(dom.contains(want), "{want} not in the rendered page");
        }
        // Printed, one reading fills one A4 page.
        let pdf = dir.path().join("report.pdf");
        chromium(&[
            &format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer",
            &url,
        ]);
        let bytes = std::fs::read(&pdf).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let pages = text.matches("/Type /Page").count() - text.matches("/Type /Pages").count();
        let pages = if pages == 0 {
            text.matches("/Type/Page").count() - text.matches("/Type/Pages").count()
        } else {
            pages
        };
        assert_eq!(pages, 1, "the printed report has {pages} pages");
        // To look at it: BONE_AGE_REPORT_SHOT=shot.png cargo test --test readout.
        if let Ok(keep) = std::env::var("BONE_AGE_REPORT_SHOT") {
            std::fs::copy(&shot, keep).unwrap();
        }
    }
}
