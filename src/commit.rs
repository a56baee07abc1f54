//! Checkpoint sets written as one, so a kill at any moment leaves a set that resumes.
//!
//! Every file of an epoch (weights and sidecars, optimizer state, metrics, TensorBoard
//! events) is written into `RUN/.staging/` and synced; one rename of that folder to
//! `RUN/.commit/` is the commit point; the files then move into place one by one and the
//! folder is removed. [`recover`] runs before every write and at the start of a run: it
//! finishes a committed set (roll forward), discards a staged one (roll back) and removes
//! stale temporary files. A full disk can only fail while staging, so the previous set
//! stays whole. [`Faults`] injects a kill or a full disk at any numbered step, for tests.
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const STAGING: &str = ".staging";
const COMMITTED: &str = ".commit";

/// A fault to inject at a numbered step of the checkpoint writes (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The process aborts before the step (as a SIGKILL would: no cleanup runs).
    Kill(usize),
    /// The step fails with ENOSPC ("No space left on device").
    DiskFull(usize),
}

impl std::str::FromStr for Fault {
    type Err = Error;
    /// `kill:N` or `enospc:N`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Invalid {
            what: "fault".into(),
            message: format!("{s:?}: expected kill:N or enospc:N with N >= 1"),
        };
        let (kind, n) = s.split_once(':').ok_or_else(bad)?;
        let n: usize = n.parse().ok().filter(|&n| n >= 1).ok_or_else(bad)?;
        match kind {
            "kill" => Ok(Fault::Kill(n)),
            "enospc" => Ok(Fault::DiskFull(n)),
            _ => Err(bad()),
        }
    }
}

/// Counts the steps of checkpoint writes and fires the planned fault.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    pub plan: Option<Fault>,
    /// Steps taken so far.
    pub steps: usize,
}

impl Faults {
    pub fn new(plan: Option<Fault>) -> Self {
        Self { plan, steps: 0 }
    }

    /// Called before each write or rename; `path` is what the step touches.
    pub fn step(&mut self, path: &Path) -> Result<()> {
        self.steps += 1;
        match self.plan {
            Some(Fault::Kill(n)) if n == self.steps => {
                eprintln!("fault injection: killed at step {n} ({})", path.display());
                std::process::abort()
            }
            Some(Fault::DiskFull(n)) if n == self.steps => Err(Error::io(
                path,
                std::io::Error::from_raw_os_error(28), // ENOSPC
            )),
            _ => Ok(()),
        }
    }
}

/// Writes one file of a set to the given path.
pub type WriteFn<'a> = Box<dyn FnOnce(&Path) -> Result<()> + 'a>;

/// What [`recover`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Files a committed set moved into place (a kill interrupted it).
    pub rolled_forward: Vec<String>,
    /// Whether an uncommitted, staged set was discarded.
    pub discarded_staging: bool,
    /// Stale temporary files removed.
    pub removed_temporaries: Vec<PathBuf>,
}

/// Writes `files` (name, writer) into `dir` as one set; see the module docs.
pub fn commit(dir: &Path, files: Vec<(String, WriteFn<'_>)>, faults: &mut Faults) -> Result<()> {
    recover(dir, faults)?;
    let staging = dir.join(STAGING);
    std::fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    for (name, write) in files {
        let path = staging.join(&name);
        let written = faults
            .step(&path)
            .and_then(|()| write(&path))
            .and_then(|()| sync(&path));
        if let Err(e) = written {
            // Nothing of this set is in place: drop it, the previous set stays whole.
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    }
    sync(&staging)?;
    let committed = dir.join(COMMITTED);
    faults.step(&committed)?;
    std::fs::rename(&staging, &committed).map_err(|e| Error::io(&committed, e))?;
    sync(dir)?;
    roll_forward(dir, faults).map(|_| ())
}

/// Whether `dir` holds a committed set not yet moved into place.
pub fn is_pending(dir: &Path) -> bool {
    dir.join(COMMITTED).is_dir()
}

/// Brings `dir` to its last committed set: finishes a committed one, discards a staged
/// one, removes stale temporaries (`.tmp-*`, `*.tmp`). Idempotent, so a kill inside it
/// is harmless too.
pub fn recover(dir: &Path, faults: &mut Faults) -> Result<Recovery> {
    let mut report = Recovery::default();
    if !dir.is_dir() {
        return Ok(report);
    }
    report.rolled_forward = roll_forward(dir, faults)?;
    let staging = dir.join(STAGING);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
        report.discarded_staging = true;
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_file() && (name.starts_with(".tmp-") || name.ends_with(".tmp")) {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            report.removed_temporaries.push(path);
        }
    }
    if report != Recovery::default() {
        tracing::info!(dir = %dir.display(), ?report, "recovered an interrupted write");
    }
    Ok(report)
}

/// Moves every file of a committed set into place, then removes the set's folder.
fn roll_forward(dir: &Path, faults: &mut Faults) -> Result<Vec<String>> {
    let committed = dir.join(COMMITTED);
    if !committed.is_dir() {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = std::fs::read_dir(&committed)
        .map_err(|e| Error::io(&committed, e))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in &names {
        let target = dir.join(name);
        faults.step(&target)?;
        std::fs::rename(committed.join(name), &target).map_err(|e| Error::io(&target, e))?;
    }
    sync(dir)?;
    faults.step(&committed)?;
    std::fs::remove_dir(&committed).map_err(|e| Error::io(&committed, e))?;
    Ok(names)
}

/// fsync of a file or a directory, so a power cut cannot reorder the steps either.
fn sync(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &'static str) -> WriteFn<'static> {
        Box::new(move |p: &Path| std::fs::write(p, s).map_err(|e| Error::io(p, e)))
    }

    fn set(a: &'static str, b: &'static str) -> Vec<(String, WriteFn<'static>)> {
        vec![("a.txt".into(), text(a)), ("b.txt".into(), text(b))]
    }

    fn read(dir: &Path) -> (String, String) {
        let r = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap_or_default();
        (r("a.txt"), r("b.txt"))
    }

    #[test]
    fn a_full_disk_at_any_step_keeps_the_previous_set_or_completes_the_new_one() {
        // Steps of the second commit: 2 writes, the commit rename, 2 moves, the cleanup.
        for n in 1..=7 {
            let dir = tempfile::tempdir().unwrap();
            commit(dir.path(), set("1", "1"), &mut Faults::default()).unwrap();
            let mut faults = Faults::new(Some(Fault::DiskFull(n)));
            let result = commit(dir.path(), set("2", "2"), &mut faults);
            recover(dir.path(), &mut Faults::default()).unwrap();
            let got = read(dir.path());
            match result {
                Err(e) => {
                    assert!(e.to_string().contains("No space left"), "{e}");
                    assert!(
                        got == ("1".into(), "1".into()) || got == ("2".into(), "2".into()),
                        "step {n}: a mixed set {got:?}"
                    );
                    if n <= 3 {
                        assert_eq!(got, ("1".into(), "1".into()), "step {n}");
                    }
                }
                Ok(()) => assert_eq!((n, got), (7, ("2".into(), "2".into()))),
            }
            let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(left.len(), 2, "step {n}: only the set's files remain");
        }
    }

    #[test]
    fn recovery_removes_stale_temporaries_and_a_staged_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".tmp-123-last.safetensors"), "x").unwrap();
        std::fs::write(dir.path().join("config.toml.tmp"), "x").unwrap();
        std::fs::create_dir(dir.path().join(STAGING)).unwrap();
        std::fs::write(dir.path().join(STAGING).join("a.txt"), "half").unwrap();
        let r = recover(dir.path(), &mut Faults::default()).unwrap();
        assert!(r.discarded_staging);
        assert_eq!(r.removed_temporaries.len(), 2);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn faults_parse() {
        assert_eq!("kill:3".parse::<Fault>().unwrap(), Fault::Kill(3));
        assert_eq!("enospc:1".parse::<Fault>().unwrap(), Fault::DiskFull(1));
        for bad in ["kill", "kill:0", "boom:2"] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }
}
