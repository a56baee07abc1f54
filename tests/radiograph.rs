//! Radiograph decoding: bit depths and colour types, the decompression-bomb limit,
//! corrupt files, and the recipe crop on real registered and raw radiographs.
mod common;

use std::path::Path;

use bone_age::preprocess::{decode_gray, Preprocess};
use image::{GrayImage, ImageBuffer, Luma, Rgb, Rgba};

fn save_palette_png(path: &Path, w: u32, h: u32) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(vec![0, 0, 0, 255, 255, 255, 255, 0, 0]); // black, white, red
    let mut writer = enc.write_header().unwrap();
    let data: Vec<u8> = (0..w * h).map(|i| (i % 3) as u8).collect();
    writer.write_image_data(&data).unwrap();
}

#[test]
fn decodes_every_colour_type_to_8_bit_luminance() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    GrayImage::from_pixel(3, 2, Luma([77]))
        .save(p("g8.png"))
        .unwrap();
    // 12-bit data in a 16-bit PNG: stretched to the full 8-bit range.
    ImageBuffer::<Luma<u16>, _>::from_fn(3, 2, |x, _| Luma([[0, 2048, 4095][x as usize]]))
        .save(p("g16.png"))
        .unwrap();
    ImageBuffer::<Rgb<u8>, _>::from_pixel(3, 2, Rgb([255, 0, 0]))
        .save(p("rgb.png"))
        .unwrap();
    ImageBuffer::<Rgba<u8>, _>::from_pixel(3, 2, Rgba([0, 255, 0, 255]))
        .save(p("rgba.png"))
        .unwrap();
    GrayImage::from_pixel(3, 2, Luma([200]))
        .save(p("g8.jpg"))
        .unwrap();
    save_palette_png(&p("pal.png"), 3, 2);

    assert!(decode_gray(&p("g8.png"), 1000)
        .unwrap()
        .iter()
        .all(|&v| v == 77));
    let g16 = decode_gray(&p("g16.png"), 1000).unwrap();
    assert_eq!(
        (
            g16.get_pixel(0, 0)[0],
            g16.get_pixel(1, 0)[0],
            g16.get_pixel(2, 0)[0]
        ),
        (0, 128, 255)
    );
    let red = decode_gray(&p("rgb.png"), 1000).unwrap().get_pixel(0, 0)[0];
    let green = decode_gray(&p("rgba.png"), 1000).unwrap().get_pixel(0, 0)[0];
    assert!(
        red < green && red > 30,
        "luminance weights: red {red}, green {green}"
    );
    assert!((decode_gray(&p("g8.jpg"), 1000).unwrap().get_pixel(1, 1)[0] as i32 - 200).abs() <= 2);
    let pal = decode_gray(&p("pal.png"), 1000).unwrap();
    assert_eq!((pal.get_pixel(0, 0)[0], pal.get_pixel(1, 0)[0]), (0, 255));
    assert!(
        pal.get_pixel(2, 0)[0] > 30 && pal.get_pixel(2, 0)[0] < 100,
        "red by luminance"
    );
}

#[test]
fn oversized_images_are_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.png");
    GrayImage::new(100, 100).save(&path).unwrap();
    let err = decode_gray(&path, 9_999).unwrap_err().to_string();
    assert!(
        err.contains("big.png")
            && err.contains("10000 pixels")
            && err.contains("decompression bomb"),
        "{err}"
    );
    assert!(decode_gray(&path, 10_000).is_ok());
}

#[test]
fn corrupt_and_truncated_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.png");
    std::fs::write(&garbage, b"this is not a png at all").unwrap();
    let err = decode_gray(&garbage, 1 << 20).unwrap_err().to_string();
    assert!(err.contains("garbage.png"), "{err}");

    let truncated = dir.path().join("cut.png");
    common::write_png(&truncated, 1, 64, 64);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = decode_gray(&truncated, 1 << 20).unwrap_err().to_string();
    assert!(err.contains("cut.png") && err.contains("decode"), "{err}");

    let missing = dir.path().join("nope.png");
    assert!(decode_gray(&missing, 1 << 20)
        .unwrap_err()
        .to_string()
        .contains("nope.png"));
}

#[test]
#[cfg_attr(not(shared_data), ignore = "../shared/data is absent")]
fn recipe_crop_on_real_registered_and_raw_radiographs() {
    let registered = common::shared_data("rsna-registered-sample/train");
    let first = std::fs::read_dir(&registered)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let img = Preprocess::default().load(&first).unwrap();
    assert_eq!(
        (img.height(), img.width()),
        (600, 451),
        "500×375 plus the augmentation margin"
    );
    let mean = img.iter().map(|&v| v as f64).sum::<f64>() / img.len() as f64;
    assert!(mean > 5.0, "a hand is in the crop (mean {mean})");

    // Raw originals of any size and orientation: fit to 2080×1600 first.
    let fit = Preprocess {
        fit: Some([2080, 1600]),
        ..Default::default()
    };
    for entry in std::fs::read_dir(common::shared_data("rsna-raw-sample/train"))
        .unwrap()
        .take(5)
    {
        let out = fit.load(&entry.unwrap().path()).unwrap();
        assert_eq!((out.height(), out.width()), (600, 451));
    }
}

#[test]
#[cfg_attr(not(shared_data), ignore = "../shared/data is absent")]
fn the_inversion_check_catches_inverted_copies_of_real_radiographs() {
    use bone_age::preprocess::{looks_inverted, OnFailure};
    let mut paths: Vec<std::path::PathBuf> = Vec::new();
    for set in ["rsna-registered-sample/train", "rsna-raw-sample/train"] {
        for e in std::fs::read_dir(common::shared_data(set)).unwrap() {
            paths.push(e.unwrap().path());
        }
    }
    assert_eq!(paths.len(), 70);
    let (mut false_alarms, mut caught) = (0, 0);
    for p in &paths {
        let img = decode_gray(p, 64 << 20).unwrap();
        false_alarms += looks_inverted(&img) as usize;
        let mut inverted = img.clone();
        image::imageops::invert(&mut inverted);
        caught += looks_inverted(&inverted) as usize;
    }
    // Measured: 0 and 68 of 70 (docs/dicom.md).
    assert!(
        false_alarms <= 1,
        "{false_alarms} of 70 normal radiographs flagged"
    );
    assert!(caught >= 63, "only {caught} of 70 inverted copies caught");
    // "fix" turns an inverted copy back, with a warning; "refuse" names the file.
    let p = &paths[0];
    let img = decode_gray(p, 64 << 20).unwrap();
    let mut inverted = img.clone();
    image::imageops::invert(&mut inverted);
    let mut pre = Preprocess::default();
    let fixed = pre.prepare(p, inverted.clone(), false).unwrap();
    assert!(fixed.inverted && fixed.warnings[0].contains("inverted back"));
    assert_eq!(fixed.image, img);
    pre.hand.inverted = OnFailure::Refuse;
    let err = pre.prepare(p, inverted, false).unwrap_err().to_string();
    assert!(
        err.contains(&*p.to_string_lossy()) && err.contains("refused"),
        "{err}"
    );
}
