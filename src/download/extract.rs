//! Extraction into place: every zip entry's CRC checked, entries that escape the target
//! refused, through a temporary directory renamed into place, then the completion marker.
use std::fs::{self, File};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::{err, MARKER};
use crate::error::{Error, Result};

/// Extracts `archive` (a zip) into `to`, or moves a single non-zip file there; through a
/// temporary sibling directory renamed into place, ending with the completion marker.
pub fn extract(archive: &Path, to: &Path, source: &str) -> Result<()> {
    let parent = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = parent.join(format!(
        ".{}.extracting",
        to.file_name().and_then(|n| n.to_str()).unwrap_or("data")
    ));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let is_zip = is_zip(archive);
    let result = if is_zip {
        unzip(archive, &tmp)
    } else {
        let name = Path::new(source.rsplit('/').next().unwrap_or("download"))
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| "download".into());
        fs::copy(archive, tmp.join(name))
            .map(drop)
            .map_err(|e| Error::io(archive, e))
    };
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let marker = serde_json::json!({ "url": source, "zip": is_zip });
    fs::write(tmp.join(MARKER), marker.to_string()).map_err(|e| Error::io(&tmp, e))?;
    if to.exists() {
        fs::remove_dir_all(to).map_err(|e| Error::io(to, e))?;
    }
    fs::rename(&tmp, to).map_err(|e| Error::io(to, e))
}

/// Whether `path` starts with the zip local-file signature.
pub(super) fn is_zip(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"PK\x03\x04"
}

fn unzip(archive: &Path, into: &Path) -> Result<()> {
    let bad = |m: String| err(format!("{}: {m}", archive.display()));
    let file = File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a valid zip ({e})")))?;
    // Check every entry's path and the total size before writing anything.
    let mut total = 0u64;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| bad(format!("entry {i}: {e}")))?;
        let name = entry
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| format!("entry {i}"));
        let safe = Path::new(&name)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !safe || entry.enclosed_name().is_none() {
            return Err(bad(format!(
                "refusing entry {name:?}: its path leaves the target directory"
            )));
        }
        if entry.is_symlink() {
            return Err(bad(format!(
                "refusing entry {name:?}: symbolic links are not extracted"
            )));
        }
        total += entry.size();
    }
    let free = fs4::available_space(into).map_err(|e| Error::io(into, e))?;
    if total > free {
        return Err(err(format!(
            "the disk is full: extracting needs {total} bytes, {} has {free} free",
            into.display()
        )));
    }
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| bad(format!("entry {i}: {e}")))?;
        let rel = entry.enclosed_name().expect("checked above");
        let out = into.join(rel);
        if entry.is_dir() {
            fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
            continue;
        }
        if let Some(p) = out.parent() {
            fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
        }
        let mut f = File::create(&out).map_err(|e| Error::io(&out, e))?;
        // Reading to the end makes the zip crate check the entry's CRC-32.
        std::io::copy(&mut entry, &mut f)
            .map_err(|e| bad(format!("entry {:?}: {e}", entry.name())))?;
    }
    Ok(())
}
