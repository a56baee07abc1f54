//! The decode-once cache: every radiograph of a frame is decoded, cropped (with
//! margin) or fitted, scaled and normalised once, in parallel on all cores, into one
//! safetensors file of u8 images `[N, 1, Hc, Wc]`.
//!
//! The file name is a SHA-256 key over the input files (path, size, mtime) and the
//! preprocessing parameters, so any change rebuilds it. A CRC-32 of the pixels in the
//! header detects a corrupt or partial file, which is then rebuilt. Writes are atomic
//! (temp file, then rename), so a killed build never leaves a file that looks complete.
//!
//! An image that cannot be read (corrupt, truncated, an unsupported DICOM encoding, over
//! the pixel limit) does not stop the others: it is reported by name with its reason,
//! its row is left black and listed in [`ImageCache::skipped`], and the loader leaves it
//! out. Only when no image can be read does the build fail.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use indicatif::ParallelProgressIterator;
use polars::prelude::DataFrame;
use rayon::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};
use tch::{Kind, Tensor};

use crate::dataset;
use crate::error::{Error, Result};
use crate::preprocess::{Geometry, Preprocess};

/// Bump when the file layout or the preprocessing code changes meaning.
const FORMAT: &str = "bone-age-cache-v2"; // v2: intensity steps over the image pixels only

/// How [`ImageCache::open`] got its images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheSource {
    /// Read from an existing valid cache file: no image was decoded.
    Loaded,
    /// Decoded the images and wrote the file (none existed, or it was stale or corrupt).
    Built,
}

/// Preprocessed images of one frame, in frame order.
#[derive(Debug)]
pub struct ImageCache {
    /// `[N, 1, Hc, Wc]` u8 on the CPU.
    pub images: Tensor,
    pub ids: Vec<i64>,
    pub geometry: Geometry,
    pub path: PathBuf,
    pub source: CacheSource,
    /// Ids whose image could not be read when the cache was built (their rows are black;
    /// [`crate::loader::BatchLoader`] leaves them out).
    pub skipped: Vec<i64>,
}

impl ImageCache {
    /// Loads the cache for `frame` under `cache_dir`, building it if absent, stale or corrupt.
    pub fn open(frame: &DataFrame, pre: &Preprocess, cache_dir: &Path) -> Result<ImageCache> {
        pre.validate()?;
        let ids = dataset::ids(frame)?;
        let paths = dataset::paths(frame)?;
        if paths.is_empty() {
            return Err(Error::Frame(
                "no images to cache: the frame is empty".into(),
            ));
        }
        let key = cache_key(&paths, pre)?;
        let path = cache_dir.join(format!("images-{}.safetensors", &key[..20]));
        if path.exists() {
            match read(&path, &key) {
                Ok((images, cached_ids, geometry, skipped)) if cached_ids == ids => {
                    tracing::info!(path = %path.display(), "cache hit");
                    if !skipped.is_empty() {
                        tracing::warn!(
                            "{} image(s) could not be read when this cache was built and are left out (ids {:?})",
                            skipped.len(),
                            &skipped[..skipped.len().min(10)]
                        );
                    }
                    return Ok(ImageCache {
                        images,
                        ids,
                        geometry,
                        path,
                        source: CacheSource::Loaded,
                        skipped,
                    });
                }
                Ok(_) => {
                    tracing::warn!(path = %path.display(), "cache ids differ from the frame; rebuilding")
                }
                Err(e) => tracing::warn!("{e}; rebuilding"),
            }
        }
        std::fs::create_dir_all(cache_dir).map_err(|e| Error::io(cache_dir, e))?;
        let (pixels, geometry, failed) = build(&paths, pre)?;
        let skipped: Vec<i64> = failed.iter().map(|&i| ids[i]).collect();
        write(&path, &key, &pixels, &ids, geometry, &skipped)?;
        let [h, w] = geometry.cached.map(|v| v as i64);
        let images = Tensor::from_data_size(&pixels, &[ids.len() as i64, 1, h, w], Kind::Uint8);
        Ok(ImageCache {
            images,
            ids,
            geometry,
            path,
            source: CacheSource::Built,
            skipped,
        })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// SHA-256 over the format, the preprocessing parameters and each input's path, size and mtime.
pub fn cache_key(paths: &[PathBuf], pre: &Preprocess) -> Result<String> {
    let mut h = Sha256::new();
    h.update(FORMAT);
    h.update(serde_json::to_vec(pre).expect("preprocess serialises"));
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        h.update(p.to_string_lossy().as_bytes());
        h.update(meta.len().to_le_bytes());
        h.update(mtime.to_le_bytes());
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Decodes and preprocesses every image in parallel into one `[N, Hc, Wc]` buffer, and
/// the indices of the images that could not be read (each reported by name, with why).
/// Images of the wrong size in whole-image mode are a configuration error: all reported.
///
/// A header pass reads every image's size first (nothing is decoded), so an oversized
/// image (a decompression bomb) is refused before any buffer is sized. In whole-image
/// mode the output size follows the images' size, which must be one for all: the most
/// common size sets it, and the images of another size are the ones reported.
fn build(paths: &[PathBuf], pre: &Preprocess) -> Result<(Vec<u8>, Geometry, Vec<usize>)> {
    let headers: Vec<Result<[u32; 2]>> = paths
        .par_iter()
        .map(|p| crate::preprocess::checked_dimensions(p, pre.max_pixels))
        .collect();
    // Each size with the first image that has it and how many do.
    let mut sizes: HashMap<[u32; 2], (usize, usize)> = HashMap::new();
    for (i, hw) in headers.iter().enumerate() {
        if let Ok(hw) = hw {
            sizes.entry(*hw).or_insert((i, 0)).1 += 1;
        }
    }
    // The most common size (ties: the first seen) sets a whole-image geometry.
    let common = sizes
        .iter()
        .max_by_key(|(_, &(first, n))| (n, std::cmp::Reverse(first)))
        .map(|(hw, &(_, n))| (*hw, n));
    let geometry = pre
        .fixed_geometry()
        .unwrap_or_else(|| pre.geometry(common.map_or([1, 1], |(hw, _)| hw)));
    let majority = common.map_or(0, |(_, n)| n);
    let per = geometry.cached[0] * geometry.cached[1];
    let mut pixels = vec![0u8; per * paths.len()];
    // (index, error, whether it is an unreadable image rather than a wrong size)
    let errors: Vec<(usize, Error, bool)> = pixels
        .par_chunks_mut(per)
        .zip(paths.par_iter().zip(headers))
        .enumerate()
        .progress_with(crate::progress::bar(paths.len() as u64, "preprocess"))
        .filter_map(|(i, (dst, (path, header)))| {
            if let Err(e) = header {
                return Some((i, e, true));
            }
            match pre.load(path) {
                Ok(img) if img.len() == per => {
                    dst.copy_from_slice(&img);
                    None
                }
                Ok(img) => Some((i, Error::Image {
                    path: path.clone(),
                    message: format!(
                        "preprocessed to {}×{}, but {majority} of {} images give {}×{}: whole-image \
                         mode needs images of one size (set preprocess.fit, or crop_size)",
                        img.width(),
                        img.height(),
                        paths.len(),
                        geometry.cached[1],
                        geometry.cached[0]
                    ),
                }, false)),
                Err(e) => Some((i, e, true)),
            }
        })
        .collect();
    let unreadable: Vec<usize> = errors.iter().filter(|e| e.2).map(|e| e.0).collect();
    if errors.iter().all(|e| e.2) && unreadable.len() < paths.len() {
        for (_, e, _) in &errors {
            tracing::warn!("{e}; left out");
        }
        if !unreadable.is_empty() {
            tracing::warn!(
                "{} of {} images could not be read and are left out",
                unreadable.len(),
                paths.len()
            );
        }
        return Ok((pixels, geometry, unreadable));
    }
    let errors: Vec<Error> = errors.into_iter().map(|e| e.1).collect();
    let listed: Vec<String> = errors.iter().take(10).map(|e| format!("  {e}")).collect();
    Err(Error::Dataset {
        path: paths[0].parent().unwrap_or(Path::new(".")).to_path_buf(),
        message: format!(
            "{} of {} images could not be preprocessed (none could be read, or some have the \
                 wrong size); nothing was cached:\n{}{}",
            errors.len(),
            paths.len(),
            listed.join("\n"),
            if errors.len() > 10 {
                format!("\n  … and {} more", errors.len() - 10)
            } else {
                String::new()
            }
        ),
    })
}

fn write(
    path: &Path,
    key: &str,
    pixels: &[u8],
    ids: &[i64],
    g: Geometry,
    skipped: &[i64],
) -> Result<()> {
    let shape = vec![ids.len(), 1, g.cached[0], g.cached[1]];
    let id_bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    let bad = |m: String| Error::Dataset {
        path: path.to_path_buf(),
        message: m,
    };
    let tensors = [
        (
            "images",
            TensorView::new(Dtype::U8, shape, pixels).map_err(|e| bad(e.to_string()))?,
        ),
        (
            "ids",
            TensorView::new(Dtype::I64, vec![ids.len()], &id_bytes)
                .map_err(|e| bad(e.to_string()))?,
        ),
    ];
    let meta: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("key", key.to_string()),
        ("crc32", crc32fast::hash(pixels).to_string()),
        ("out", format!("{},{}", g.out[0], g.out[1])),
        (
            "skipped",
            skipped
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // A full disk must not leave half a cache behind; nor may two runs sharing the directory.
    crate::files::atomic_write(path, |tmp| {
        safetensors::serialize_to_file(tensors, Some(meta), tmp)
            .map_err(|e| bad(format!("writing cache: {e}")))
    })
}

fn read(path: &Path, key: &str) -> Result<(Tensor, Vec<i64>, Geometry, Vec<i64>)> {
    let corrupt = |m: String| Error::Dataset {
        path: path.to_path_buf(),
        message: format!("corrupt or partial cache: {m}"),
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("key").map(String::as_str) != Some(key)
        || meta.get("format").map(String::as_str) != Some(FORMAT)
    {
        return Err(corrupt("key mismatch".into()));
    }
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let images = st.tensor("images").map_err(|e| corrupt(e.to_string()))?;
    let ids = st.tensor("ids").map_err(|e| corrupt(e.to_string()))?;
    if meta.get("crc32") != Some(&crc32fast::hash(images.data()).to_string()) {
        return Err(corrupt("pixel checksum mismatch".into()));
    }
    let shape = images.shape();
    let out: Vec<usize> = meta
        .get("out")
        .and_then(|s| s.split(',').map(|v| v.parse().ok()).collect())
        .ok_or_else(|| corrupt("no output size".into()))?;
    if shape.len() != 4 || out.len() != 2 {
        return Err(corrupt(format!("unexpected shape {shape:?}")));
    }
    let geometry = Geometry {
        out: [out[0], out[1]],
        cached: [shape[2], shape[3]],
    };
    let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let tensor = Tensor::from_data_size(images.data(), &dims, Kind::Uint8);
    let ids = ids
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let skipped = meta
        .get("skipped")
        .map(|s| {
            s.split(',')
                .filter(|v| !v.is_empty())
                .map(str::parse)
                .collect::<std::result::Result<Vec<i64>, _>>()
        })
        .transpose()
        .map_err(|e| corrupt(format!("skipped ids: {e}")))?
        .unwrap_or_default();
    Ok((tensor, ids, geometry, skipped))
}
