//! The archiver: folds the files of dead processes into upstream-compatible archive files
//! (`counter_archive.db`, `histogram_archive.db`, `summary_archive.db`,
//! `gauge_{min,max,sum,mostrecent}_archive.db`) so that scrapes stay fast and the
//! directory stays small as workers churn. Python's own `MultiProcessCollector` reads the
//! archives too.
//!
//! Safety rules (the hazards upstream cited when it refused compaction):
//! * **Death is proven**: the pid is not alive in our PID namespace (`kill(pid, 0)` gives
//!   `ESRCH`; `EPERM` counts as alive) on two passes in a row, and nothing at all is done
//!   when no pid of the directory is visible (we are in another PID namespace).
//! * **pid reuse**: files are renamed into the hidden `.mpe-staging/` directory *before*
//!   they are read, so a process that starts later with the same pid creates fresh files
//!   (starting from zero). After the rename the pid is checked again; if it is alive and
//!   maps the staged file (or its maps cannot be read), the file is moved back.
//! * **Crash consistency**: new archives are written to hidden temp files and fsynced; then
//!   a journal naming the temp archives and the staged sources is written (temp + fsync +
//!   rename: the commit point); then the archives are renamed into place, the sources
//!   deleted, and the journal removed. Recovery redoes a committed journal and otherwise
//!   merges the staged files (they are not in any archive yet). A crash at any point
//!   therefore neither double counts nor loses anything.
//! * **The postmates fork's directories** (files judged by their keys: the fork's are
//!   3-element) get the fork's archives: `counter.db`, `histogram.db`, `gauge_latest.db`,
//!   `gauge_max.db`, `gauge_min.db` with 3-element keys, `+inf` timestamps except for
//!   `latest` gauges (newest timestamp kept), so the fork's own reader still reads them; we
//!   also fold dead workers' summaries into `summary.db` (the fork's collector reads it;
//!   the fork's archiver leaves summary files forever). A pass holds the fork's `lockfile`
//!   exclusively (see [`crate::lockfile`]), so the fork's archiver never folds a pid we
//!   are folding and the fork's readers never see half a pass.
//! * `live*` gauge files of dead processes are deleted (what `mark_process_dead` does);
//!   `all`/`liveall` ones are kept unless `drop_dead_all_gauges` is set; files of unknown
//!   modes or types are never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::format::{self, DbName, FormatError};
use crate::liveness::{PidState, maps_own_db_file, namespace_visible, pid_state};
use crate::lockfile::{self, DirLock, LockError, LockKind};

mod targets;

pub use targets::ArchiveOptions;
use targets::{Acc, Archive, Disposition, disposition, flavour};

/// How long a pass waits for readers (ours or the fork's) to release `lockfile`.
const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Hidden staging directory inside the multiprocess directory.
pub const STAGING_DIR: &str = ".mpe-staging";
/// Journal file name (hidden).
pub const JOURNAL: &str = ".mpe-journal";
/// Where corrupt files of dead processes are parked (hidden, never read).
pub const CORRUPT_DIR: &str = ".mpe-corrupt";
const TMP_PREFIX: &str = ".mpe-tmp-";
const JOURNAL_HEADER: &str = "multiproc-exporter archive journal v1";

/// What one pass did.
#[derive(Debug, Default, Clone)]
pub struct PassReport {
    /// Why nothing was done, when the pass refused to act.
    pub refused: Option<String>,
    /// Dead pids handled.
    pub pids: usize,
    /// Source files folded into archives.
    pub archived_files: usize,
    /// Files deleted without merging (`live*`, and `all` gauges when asked).
    pub deleted_files: usize,
    /// Whether an interrupted earlier pass was completed first.
    pub recovered: bool,
}

/// Archive errors (the pass stops; the journal makes the next one finish the job).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// File system error.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The error.
        source: io::Error,
    },
    /// An archive or staged file could not be parsed; nothing is changed.
    #[error("cannot read {path}: {source}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        source: FormatError,
    },
    /// The journal is not one we wrote; we refuse to guess.
    #[error("journal {0} is unreadable; fix or remove it by hand")]
    BadJournal(PathBuf),
    /// The fork's `lockfile` could not be taken.
    #[error(transparent)]
    Lock(#[from] LockError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ArchiveError {
    let what = what.into();
    move |source| ArchiveError::Io { what, source }
}

/// Test hook: `MPE_ARCHIVE_CRASH_AT=<point>` aborts the process at that point of a pass,
/// so tests can prove recovery from a crash at every step. Compiled into debug builds
/// (the test suite's) only: a release binary has no fault injection.
#[cfg(debug_assertions)]
fn crash_point(point: &str) {
    if std::env::var("MPE_ARCHIVE_CRASH_AT").is_ok_and(|p| p == point) {
        std::process::abort();
    }
}

/// Release builds: a crash point is nothing.
#[cfg(not(debug_assertions))]
#[inline(always)]
fn crash_point(_point: &str) {}

fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("fsync {}", dir.display())))
}

/// The archiver of one directory; remembers which pids it has seen dead.
#[derive(Debug)]
pub struct Archiver {
    dir: PathBuf,
    opts: ArchiveOptions,
    dead_once: BTreeSet<i32>,
}

impl Archiver {
    /// An archiver for `dir`.
    pub fn new(dir: PathBuf, opts: ArchiveOptions) -> Archiver {
        Archiver {
            dir,
            opts,
            dead_once: BTreeSet::new(),
        }
    }

    fn staging(&self) -> PathBuf {
        self.dir.join(STAGING_DIR)
    }

    /// Finishes an interrupted pass, if any: redoes a committed journal, and folds staged
    /// files that no journal covers into the archives. Safe to call any time.
    pub fn recover(&mut self) -> Result<bool, ArchiveError> {
        let _lock = self.lock(false)?;
        self.recover_locked()
    }

    fn recover_locked(&mut self) -> Result<bool, ArchiveError> {
        let journal = self.dir.join(JOURNAL);
        let mut did = false;
        if journal.exists() {
            self.apply_journal(&journal)?;
            did = true;
        }
        // Temp archives of a pass that never committed.
        for ent in
            fs::read_dir(&self.dir).map_err(io_err(format!("list {}", self.dir.display())))?
        {
            let Ok(ent) = ent else { continue };
            let name = ent.file_name().to_string_lossy().to_string();
            if name.starts_with(TMP_PREFIX) || name.starts_with(&format!("{JOURNAL}.tmp")) {
                fs::remove_file(ent.path()).map_err(io_err(format!("remove {name}")))?;
                did = true;
            }
        }
        let staged = self.staged_files()?;
        if !staged.is_empty() {
            self.commit(&staged)?;
            did = true;
        }
        Ok(did)
    }

    fn staged_files(&self) -> Result<Vec<String>, ArchiveError> {
        let mut out = Vec::new();
        match fs::read_dir(self.staging()) {
            Ok(rd) => {
                for ent in rd.flatten() {
                    out.push(ent.file_name().to_string_lossy().to_string());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("list staging")(e)),
        }
        out.sort();
        Ok(out)
    }

    /// Takes the fork's `lockfile` exclusively (creating it when `create`).
    fn lock(&self, create: bool) -> Result<Option<DirLock>, ArchiveError> {
        Ok(lockfile::lock(
            &self.dir,
            LockKind::Exclusive,
            create,
            LOCK_TIMEOUT,
        )?)
    }

    /// The disposition of a file of a dead pid, judged by its name and its keys.
    fn disposition_of(&self, path: &Path, db: &DbName, buf: &mut Vec<u8>) -> Disposition {
        disposition(db, || flavour(path, buf), &self.opts)
    }

    /// One pass: recover, find dead pids, stage their files, fold them into the archives.
    pub fn pass(&mut self) -> Result<PassReport, ArchiveError> {
        // An existing lockfile is held from the start (recovery changes the directory too);
        // otherwise it is created just before the first file is staged.
        let mut lock = self.lock(false)?;
        let mut report = PassReport {
            recovered: self.recover_locked()?,
            ..PassReport::default()
        };
        let mut by_pid: BTreeMap<i32, Vec<(String, DbName)>> = BTreeMap::new();
        for ent in
            fs::read_dir(&self.dir).map_err(io_err(format!("list {}", self.dir.display())))?
        {
            let Ok(ent) = ent else { continue };
            let Ok(name) = ent.file_name().into_string() else {
                continue;
            };
            if let Some(db) = DbName::parse(&name)
                && let Some(pid) = db.owner_pid
            {
                by_pid.entry(pid).or_default().push((name, db));
            }
        }
        let owners: BTreeSet<i32> = by_pid.keys().copied().collect();
        if owners.is_empty() {
            return Ok(report);
        }
        if !namespace_visible(&owners) {
            self.dead_once.clear();
            report.refused = Some(format!(
                "none of the {} pids in {} is visible from here: the writers run in another \
                 PID namespace (share it, e.g. Kubernetes shareProcessNamespace: true)",
                owners.len(),
                self.dir.display()
            ));
            return Ok(report);
        }
        let mut confirmed = Vec::new();
        let mut dead_now = BTreeSet::new();
        let mut buf = Vec::new();
        for &pid in &owners {
            // Only pids with files to act on (kept all-mode gauges do not count).
            let mut actionable = || {
                by_pid.get(&pid).is_some_and(|files| {
                    files.iter().any(|(name, db)| {
                        self.disposition_of(&self.dir.join(name), db, &mut buf) != Disposition::Keep
                    })
                })
            };
            if pid_state(pid) == PidState::Dead && actionable() {
                dead_now.insert(pid);
                if self.dead_once.contains(&pid) {
                    confirmed.push(pid);
                }
            }
        }
        tracing::debug!(?dead_now, ?confirmed, "archive candidates");
        self.dead_once = dead_now;
        confirmed.truncate(self.opts.max_pids_per_pass);
        if confirmed.is_empty() {
            return Ok(report);
        }

        if lock.is_none() {
            lock = self.lock(true)?;
        }
        let staging = self.staging();
        fs::create_dir_all(&staging).map_err(io_err("create staging directory"))?;
        let mut staged = Vec::new();
        for pid in &confirmed {
            let mut mine = Vec::new();
            for (name, db) in by_pid.get(pid).map(|v| v.as_slice()).unwrap_or(&[]) {
                if self.disposition_of(&self.dir.join(name), db, &mut buf) == Disposition::Keep {
                    continue;
                }
                match fs::rename(self.dir.join(name), staging.join(name)) {
                    Ok(()) => mine.push(name.clone()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(format!("stage {name}"))(e)),
                }
            }
            crash_point("after-stage");
            // Re-check after the rename: a new process with this pid may have opened the
            // file before we moved it.
            if pid_state(*pid) == PidState::Alive && maps_own_db_file(*pid).unwrap_or(true) {
                for name in mine {
                    let back = self.dir.join(&name);
                    if !back.exists() {
                        fs::rename(staging.join(&name), back)
                            .map_err(io_err(format!("unstage {name}")))?;
                    }
                }
                self.dead_once.remove(pid);
                continue;
            }
            report.pids += 1;
            staged.extend(mine);
        }
        sync_dir(&staging)?;
        sync_dir(&self.dir)?;
        if staged.is_empty() {
            return Ok(report);
        }
        let (merged, deleted) = self.commit(&staged)?;
        report.archived_files += merged;
        report.deleted_files += deleted;
        drop(lock);
        Ok(report)
    }

    /// Merges staged files into new archives and publishes them crash-safely.
    fn commit(&self, staged: &[String]) -> Result<(usize, usize), ArchiveError> {
        let staging = self.staging();
        let mut accs: BTreeMap<Archive, Acc> = BTreeMap::new();
        let (mut merged, mut deleted) = (0, 0);
        let mut journaled: Vec<&String> = Vec::new();
        let mut buf = Vec::new();
        for name in staged {
            let path = staging.join(name);
            match DbName::parse(name).map(|db| self.disposition_of(&path, &db, &mut buf)) {
                Some(Disposition::Merge(t)) => {
                    if let std::collections::btree_map::Entry::Vacant(slot) = accs.entry(t) {
                        // Start from the current archive of this target.
                        let mut acc = Acc::default();
                        let existing = self.dir.join(t.file_name().unwrap_or_default());
                        if existing.exists() {
                            acc.add_file(t, &existing, &mut buf).map_err(|source| {
                                ArchiveError::Format {
                                    path: existing.clone(),
                                    source,
                                }
                            })?;
                        }
                        slot.insert(acc);
                    }
                    let acc = accs.entry(t).or_default();
                    match acc.add_file(t, &path, &mut buf) {
                        Ok(()) => {
                            merged += 1;
                            journaled.push(name);
                        }
                        Err(e) => {
                            // Unmergeable: park it where nobody reads it, and say so.
                            let dest = self.dir.join(CORRUPT_DIR);
                            fs::create_dir_all(&dest)
                                .map_err(io_err("create corrupt directory"))?;
                            fs::rename(&path, dest.join(name))
                                .map_err(io_err(format!("park corrupt {name}")))?;
                            tracing::error!(
                                "{name}: corrupt file of a dead process moved to {CORRUPT_DIR}/: {e}"
                            );
                        }
                    }
                }
                Some(Disposition::Delete) => {
                    deleted += 1;
                    journaled.push(name);
                }
                // Options changed since it was staged: put it back untouched.
                _ => {
                    let back = self.dir.join(name);
                    if !back.exists() {
                        fs::rename(&path, back).map_err(io_err(format!("unstage {name}")))?;
                    }
                }
            }
        }
        // 1. New archives as hidden temp files, fsynced.
        let mut journal = format!("{JOURNAL_HEADER}\n");
        for (t, acc) in &accs {
            let fin = t.file_name().unwrap_or_default();
            let tmp = format!("{TMP_PREFIX}{fin}");
            format::write_file(
                &self.dir.join(&tmp),
                acc.order.iter().map(|k| {
                    let (v, ts) = acc.values[k];
                    (k.as_slice(), v, ts)
                }),
            )
            .map_err(io_err(format!("write {tmp}")))?;
            journal.push_str(&format!("archive {tmp} {fin}\n"));
        }
        for name in journaled {
            journal.push_str(&format!("staged {name}\n"));
        }
        journal.push_str("end\n");
        crash_point("after-temp");
        // 2. The journal: the commit point.
        let jtmp = self.dir.join(format!("{JOURNAL}.tmp"));
        {
            let mut f = fs::File::create(&jtmp).map_err(io_err("create journal"))?;
            f.write_all(journal.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(io_err("write journal"))?;
        }
        let jpath = self.dir.join(JOURNAL);
        fs::rename(&jtmp, &jpath).map_err(io_err("publish journal"))?;
        sync_dir(&self.dir)?;
        crash_point("after-journal");
        // 3.-5. Publish archives, delete sources, drop the journal.
        self.apply_journal(&jpath)?;
        Ok((merged, deleted))
    }

    /// Redoes a committed journal (idempotent).
    fn apply_journal(&self, jpath: &Path) -> Result<(), ArchiveError> {
        let text = fs::read_to_string(jpath).map_err(io_err("read journal"))?;
        let mut lines = text.lines();
        if lines.next() != Some(JOURNAL_HEADER) || !text.ends_with("end\n") {
            return Err(ArchiveError::BadJournal(jpath.to_path_buf()));
        }
        let mut archives = Vec::new();
        let mut staged = Vec::new();
        for l in lines {
            let parts: Vec<&str> = l.split(' ').collect();
            match parts.as_slice() {
                ["archive", tmp, fin]
                    if tmp.starts_with(TMP_PREFIX) && Archive::from_file_name(fin).is_some() =>
                {
                    archives.push((tmp.to_string(), fin.to_string()))
                }
                ["staged", name] if !name.contains('/') && !name.starts_with('.') => {
                    staged.push(name.to_string())
                }
                ["end"] => {}
                _ => return Err(ArchiveError::BadJournal(jpath.to_path_buf())),
            }
        }
        for (i, (tmp, fin)) in archives.iter().enumerate() {
            let src = self.dir.join(tmp);
            if src.exists() {
                fs::rename(&src, self.dir.join(fin)).map_err(io_err(format!("publish {fin}")))?;
            }
            if i == 0 {
                crash_point("mid-publish");
            }
        }
        sync_dir(&self.dir)?;
        crash_point("after-publish");
        let staging = self.staging();
        for name in &staged {
            match fs::remove_file(staging.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(format!("remove staged {name}"))(e)),
            }
        }
        sync_dir(&staging)?;
        crash_point("after-delete");
        fs::remove_file(jpath).map_err(io_err("remove journal"))?;
        sync_dir(&self.dir)?;
        Ok(())
    }
}
