//! Decoding: image headers and pixels to 8-bit grey, with a size limit checked from the
//! header before anything is allocated. DICOM files (recognised by content) go through
//! [`super::dicom`]; PNG and JPEG through `image`.
use std::path::Path;

use image::GrayImage;

use super::dicom::{self, DicomInfo};
use crate::error::{Error, Result};

/// A reader for `path` with the format guessed from its content.
fn open_image(path: &Path) -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>> {
    image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| Error::io(path, e))
}

/// A decoded radiograph, with what its DICOM header said when it was one.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub image: GrayImage,
    pub dicom: Option<DicomInfo>,
}

/// An image's [H, W] from its header alone (nothing is decoded).
pub fn dimensions(path: &Path) -> Result<[u32; 2]> {
    if dicom::is_dicom(path) {
        let info = dicom::header(path)?;
        return Ok([info.rows, info.columns]);
    }
    let (w, h) = open_image(path)?
        .into_dimensions()
        .map_err(|e| Error::Image {
            path: path.to_path_buf(),
            message: format!("not a readable image: {e}"),
        })?;
    Ok([h, w])
}

/// [`dimensions`], refusing images of more than `max_pixels` (decompression bombs).
pub fn checked_dimensions(path: &Path, max_pixels: u64) -> Result<[u32; 2]> {
    let [h, w] = dimensions(path)?;
    let pixels = w as u64 * h as u64;
    if pixels > max_pixels {
        return Err(Error::Image {
            path: path.to_path_buf(),
            message: format!(
                "{w}×{h} = {pixels} pixels exceeds the limit of {max_pixels} (preprocess.max_pixels); \
                 refusing to decode (possible decompression bomb)"
            ),
        });
    }
    Ok([h, w])
}

/// [`decode`]'s grey levels alone.
pub fn decode_gray(path: &Path, max_pixels: u64) -> Result<GrayImage> {
    decode(path, max_pixels).map(|d| d.image)
}

/// Decodes a radiograph to 8-bit grey: DICOM through its rescale, window and photometric
/// interpretation ([`dicom::read`]); PNG and JPEG with RGB(A) and palette images by
/// luminance, 16-bit images by stretching their own min–max range to 0–255 (12-bit data
/// would otherwise come out nearly black). Refuses images over `max_pixels`.
pub fn decode(path: &Path, max_pixels: u64) -> Result<Decoded> {
    if dicom::is_dicom(path) {
        let (image, info) = dicom::read(path, max_pixels)?;
        return Ok(Decoded {
            image,
            dicom: Some(info),
        });
    }
    let bad = |message: String| Error::Image {
        path: path.to_path_buf(),
        message,
    };
    // Read the header alone first, so a huge image is refused before any allocation.
    let [h, w] = checked_dimensions(path, max_pixels)?;
    let pixels = w as u64 * h as u64;
    let mut reader = open_image(path)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(pixels * 8 + (1 << 20));
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| bad(format!("cannot decode: {e}")))?;
    let image = match img {
        image::DynamicImage::ImageLuma8(g) => g,
        image::DynamicImage::ImageLuma16(g) => stretch_u16(&g),
        image::DynamicImage::ImageLumaA16(_)
        | image::DynamicImage::ImageRgb16(_)
        | image::DynamicImage::ImageRgba16(_) => stretch_u16(&img.to_luma16()),
        other => other.to_luma8(),
    };
    Ok(Decoded { image, dicom: None })
}

fn stretch_u16(img: &image::ImageBuffer<image::Luma<u16>, Vec<u16>>) -> GrayImage {
    let (lo, hi) = img
        .iter()
        .fold((u16::MAX, 0u16), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let range = (hi.saturating_sub(lo)).max(1) as u32;
    let data = img
        .iter()
        .map(|&v| (((v - lo) as u32 * 255 + range / 2) / range) as u8)
        .collect();
    GrayImage::from_raw(img.width(), img.height(), data).expect("same size")
}
