//! Opening a DICOM file and decoding its first frame: the transfer syntax checked against
//! what dicom-pixeldata decodes here, the size checked before decoding, the stored values
//! extracted (masked to Bits Stored, sign-extended) and turned to grey ([`super::grey`]).
use std::path::Path;

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{
    DecodedPixelData, PhotometricInterpretation, PixelDecoder, PixelRepresentation,
    PlanarConfiguration, Rescale, VoiLutFunction,
};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use image::GrayImage;

use super::grey::{self, Voi};
use super::{DicomInfo, DicomMeta, WindowSource};
use crate::error::{Error, Result};

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Image {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Opens `path`'s data set, to the pixel data (`header_only`) or whole.
fn open(path: &Path, header_only: bool) -> Result<DefaultDicomObject> {
    let mut options = OpenFileOptions::new();
    if header_only {
        options = options.read_until(tags::PIXEL_DATA);
    }
    options
        .open_file(path)
        .map_err(|e| bad(path, format!("not a readable DICOM file: {}", chain(&e))))
}

/// An error with its causes, `a: b: c` (dicom-rs errors say little at the top level).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text
}

/// The transfer syntax's name, refusing one whose pixel data cannot be decoded here.
fn check_transfer_syntax(path: &Path, uid: &str) -> Result<String> {
    let ts = TransferSyntaxRegistry.get(uid).ok_or_else(|| {
        bad(
            path,
            format!("unknown transfer syntax {uid}: cannot decode its pixel data"),
        )
    })?;
    if !ts.can_decode_all() {
        return Err(bad(
            path,
            format!(
                "transfer syntax {} ({uid}) is not supported: bone-age decodes uncompressed \
                 (explicit/implicit VR, little/big endian), deflate, RLE, JPEG baseline, extended \
                 and lossless, and JPEG 2000; convert the file (e.g. `dcmdjpls` or `gdcmconv --raw`)",
                ts.name()
            ),
        ));
    }
    Ok(ts.name().to_string())
}

fn int(obj: &DefaultDicomObject, tag: dicom_object::Tag) -> Option<i64> {
    obj.element_opt(tag).ok()??.to_int::<i64>().ok()
}

/// The header's facts, and the VOI transform it asks for (or the percentile window).
fn describe(path: &Path, obj: &DefaultDicomObject) -> Result<(DicomInfo, Voi)> {
    let uid = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let name = check_transfer_syntax(path, &uid)?;
    let text = |tag| super::tags::text(obj, tag);
    let photometric = text(tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
    let rows = int(obj, tags::ROWS).unwrap_or(0).max(0) as u32;
    let columns = int(obj, tags::COLUMNS).unwrap_or(0).max(0) as u32;
    let frames = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as u32;
    let float = |tag| {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_multi_float64().ok())
            .and_then(|v| v.first().copied())
    };
    let rescale = [
        float(tags::RESCALE_SLOPE).unwrap_or(1.0),
        float(tags::RESCALE_INTERCEPT).unwrap_or(0.0),
    ];
    let window = float(tags::WINDOW_CENTER).zip(float(tags::WINDOW_WIDTH));
    let function = match text(tags::VOILUT_FUNCTION).as_deref() {
        Some("SIGMOID") => VoiLutFunction::Sigmoid,
        Some("LINEAR_EXACT") => VoiLutFunction::LinearExact,
        _ => VoiLutFunction::Linear,
    };
    let lut = voi_lut(obj);
    let voi = match (window, lut) {
        (Some((center, width)), _) if width > 0.0 => Voi::Window {
            window: dicom_pixeldata::WindowLevel { center, width },
            function,
        },
        (_, Some((first, data))) => Voi::Lut { first, data },
        _ => Voi::Percentile,
    };
    let colour = !photometric.starts_with("MONOCHROME");
    let meta = DicomMeta::of(obj);
    let mut warnings = meta.warnings();
    if frames > 1 {
        warnings.push(format!("{frames} frames: reading the first"));
    }
    let info = DicomInfo {
        transfer_syntax: uid,
        transfer_syntax_name: name,
        photometric,
        bits_stored: int(obj, tags::BITS_STORED).unwrap_or(0).max(0) as u16,
        frames,
        rows,
        columns,
        window_source: if colour {
            WindowSource::Colour
        } else {
            voi.source()
        },
        rescale,
        meta,
        warnings,
    };
    Ok((info, voi))
}

/// The first LUT of the VOI LUT Sequence: (first mapped value, entries).
fn voi_lut(obj: &DefaultDicomObject) -> Option<(i32, Vec<u16>)> {
    let seq = obj.element_opt(tags::VOILUT_SEQUENCE).ok()??;
    let item = seq.items()?.first()?;
    let desc = item
        .element_opt(tags::LUT_DESCRIPTOR)
        .ok()??
        .to_multi_int::<i32>()
        .ok()?;
    let data = item
        .element_opt(tags::LUT_DATA)
        .ok()??
        .to_multi_int::<u16>()
        .ok()?;
    (desc.len() == 3 && !data.is_empty()).then(|| (desc[1], data))
}

/// `path`'s header without its pixel data: size, frames, photometric interpretation,
/// window source and the readout's tags.
pub(super) fn header(path: &Path) -> Result<DicomInfo> {
    describe(path, &open(path, true)?).map(|(info, _)| info)
}

/// Reads `path`'s first frame as 8-bit grey (bone bright), refusing images over
/// `max_pixels` before anything is decoded. Decoder panics become errors.
pub(super) fn read(path: &Path, max_pixels: u64) -> Result<(GrayImage, DicomInfo)> {
    let obj = open(path, false)?;
    let (info, voi) = describe(path, &obj)?;
    if obj.element_opt(tags::PIXEL_DATA).ok().flatten().is_none() {
        return Err(bad(
            path,
            "no pixel data: not an image (a report, plan, waveform or other non-image object)",
        ));
    }
    let pixels = info.rows as u64 * info.columns as u64;
    if pixels == 0 {
        return Err(bad(
            path,
            format!("{}×{} image: nothing to read", info.columns, info.rows),
        ));
    }
    if pixels > max_pixels {
        return Err(bad(
            path,
            format!(
                "{}×{} = {pixels} pixels exceeds the limit of {max_pixels} (preprocess.max_pixels); \
                 refusing to decode (possible decompression bomb)",
                info.columns, info.rows
            ),
        ));
    }
    if info.photometric == "YBR_FULL_422" && !is_encapsulated(&info.transfer_syntax) {
        return Err(bad(path, "uncompressed YBR_FULL_422 colour is not read: a hand radiograph is MONOCHROME1 or MONOCHROME2"));
    }
    if matches!(info.transfer_syntax.as_str(), JPEG_BASELINE | JPEG_EXTENDED)
        && info.photometric == "RGB"
    {
        let first = obj
            .element(tags::PIXEL_DATA)
            .ok()
            .and_then(|e| e.value().fragments().and_then(|f| f.first().cloned()));
        if first.is_some_and(|f| rgb_read_as_ycbcr(&f)) {
            return Err(bad(
                path,
                "a lossy JPEG of RGB components without an Adobe marker: its decoder would take \
                 them for YCbCr and give wrong colours, so it is refused (store it uncompressed)",
            ));
        }
    }
    for w in &info.warnings {
        tracing::warn!("{}: {w}", path.display());
    }
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        obj.decode_pixel_data_frame(0).map(|d| d.to_owned())
    }))
    .map_err(|_| {
        bad(
            path,
            format!(
                "the {} decoder failed on this file (it panicked)",
                info.transfer_syntax_name
            ),
        )
    })?
    .map_err(|e| {
        bad(
            path,
            format!(
                "cannot decode the pixel data ({}): {}",
                info.transfer_syntax_name,
                chain(&e)
            ),
        )
    })?;
    let gray = to_gray(&decoded, &info, &voi).map_err(|m| bad(path, m))?;
    tracing::debug!(
        "{}: {} {}-bit {} frame(s), rescale {}x{:+}, VOI {}, {}",
        path.display(),
        info.photometric,
        info.bits_stored,
        info.frames,
        info.rescale[0],
        info.rescale[1],
        info.window_source.name(),
        if info.photometric == "MONOCHROME1" {
            "inverted (MONOCHROME1)"
        } else {
            "not inverted"
        }
    );
    let image = GrayImage::from_raw(info.columns, info.rows, gray)
        .ok_or_else(|| bad(path, "decoded pixel data does not fill Rows × Columns"))?;
    Ok((image, info))
}

const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
const BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";

/// Whether the transfer syntax encapsulates (compresses) its pixel data.
fn is_encapsulated(uid: &str) -> bool {
    TransferSyntaxRegistry
        .get(uid)
        .is_some_and(|ts| ts.is_encapsulated_pixel_data())
}

/// Whether jpeg-decoder will convert a 3-component JPEG from YCbCr although DICOM says
/// its components are RGB: no Adobe APP14 marker (which states the transform) and
/// component ids other than `R`, `G`, `B`. Scans the markers before the first scan.
fn rgb_read_as_ycbcr(jpeg: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xFF {
        let marker = jpeg[i + 1];
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        let seg = &jpeg[(i + 4).min(jpeg.len())..(i + 2 + len).min(jpeg.len())];
        match marker {
            0xEE => return false,
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let ids: Vec<u8> = (0..3).filter_map(|k| seg.get(6 + 3 * k).copied()).collect();
                if ids == b"RGB" {
                    return false;
                }
            }
            0xDA => return true,
            _ => {}
        }
        i += 2 + len;
    }
    true
}

/// The decoded frame's stored values (masked to Bits Stored, sign-extended), interleaved.
fn samples(px: &DecodedPixelData<'_>, big_endian: bool) -> std::result::Result<Vec<f64>, String> {
    let spp = px.samples_per_pixel() as usize;
    let n = px.rows() as usize * px.columns() as usize * spp;
    let data = px.frame_data(0).map_err(|e| e.to_string())?;
    let bytes = px.bits_allocated().div_ceil(8) as usize;
    if !matches!(bytes, 1 | 2 | 4) || px.bits_allocated() % 8 != 0 {
        return Err(format!(
            "{} bits allocated per sample is not supported",
            px.bits_allocated()
        ));
    }
    if data.len() < n * bytes {
        return Err(format!(
            "truncated pixel data: {} bytes where {}×{}×{spp} samples need {}",
            data.len(),
            px.columns(),
            px.rows(),
            n * bytes
        ));
    }
    let bits = px.bits_stored().clamp(1, 32) as u32;
    let signed = px.pixel_representation() == PixelRepresentation::Signed;
    let mask = if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    let value = |raw: u32| {
        let v = raw & mask;
        if signed && (v >> (bits - 1)) & 1 == 1 {
            v as f64 - 2f64.powi(bits as i32)
        } else {
            v as f64
        }
    };
    // dicom-object swaps big-endian pixel data as 16-bit words (OW), which leaves the
    // halves of a 32-bit sample in the wrong order.
    let swap_halves = big_endian && bytes == 4;
    let mut out: Vec<f64> = data[..n * bytes]
        .chunks_exact(bytes)
        .map(|c| match bytes {
            1 => value(c[0] as u32),
            2 => value(u16::from_ne_bytes([c[0], c[1]]) as u32),
            _ if swap_halves => value(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]).rotate_left(16)),
            _ => value(u32::from_ne_bytes([c[0], c[1], c[2], c[3]])),
        })
        .collect();
    if spp > 1 && px.planar_configuration() == PlanarConfiguration::PixelFirst {
        let plane = n / spp;
        out = (0..n).map(|i| out[(i % spp) * plane + i / spp]).collect();
    }
    Ok(out)
}

/// The decoded frame to 8-bit grey: monochrome through [`grey::to_gray8`], 8-bit RGB by
/// luminance, uncompressed YBR_FULL by its Y plane. Palette colour and other colour
/// models are refused: a hand radiograph is monochrome.
fn to_gray(
    px: &DecodedPixelData<'_>,
    info: &DicomInfo,
    voi: &Voi,
) -> std::result::Result<Vec<u8>, String> {
    let values = samples(px, info.transfer_syntax == BIG_ENDIAN)?;
    let eight_bit = || -> std::result::Result<Vec<u8>, String> {
        if px.bits_stored() > 8 {
            return Err(format!("{}-bit colour is not supported", px.bits_stored()));
        }
        Ok(values.iter().map(|&v| v as u8).collect())
    };
    match (px.photometric_interpretation(), px.samples_per_pixel()) {
        (PhotometricInterpretation::Monochrome1 | PhotometricInterpretation::Monochrome2, 1) => {
            let [slope, intercept] = info.rescale;
            let mono1 = *px.photometric_interpretation() == PhotometricInterpretation::Monochrome1;
            Ok(grey::to_gray8(
                &values,
                Rescale::new(slope, intercept),
                voi,
                mono1,
            ))
        }
        (PhotometricInterpretation::Rgb, 3) => Ok(grey::rgb_luma(&eight_bit()?)),
        (PhotometricInterpretation::YbrFull, 3) => {
            Ok(eight_bit()?.chunks_exact(3).map(|p| p[0]).collect())
        }
        (pi, spp) => Err(format!(
            "photometric interpretation {pi} with {spp} sample(s) per pixel is not read: a hand \
             radiograph is MONOCHROME1 or MONOCHROME2 (RGB and YBR_FULL are read by luminance)"
        )),
    }
}
