//! Incremental reading of a multiprocess directory. Per-file state is kept between scans:
//! a file whose writer is proven dead and whose inode, size and ctime did not change is not
//! read at all; a file seen before is re-read only for its values (keys are immutable and
//! append-only, so only the tail after the old `used` is parsed); only new files are
//! parsed and their keys interned. Files are read on several threads. An inotify watch
//! ([`watch`]) says which files may have changed: the others are not even stat-ed.
//!
//! Threads: plain `std::thread::scope` workers pulling file indexes from an atomic counter.
//! The machines this runs on have 2-4 cores and the work is one read and a parse per file,
//! so dynamic claiming of files (their sizes differ 50x) is all the scheduling we need;
//! a work-stealing pool (rayon) would add a dependency without a measurable gain.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use nix::sys::stat::{FileStat, SFlag};
use rustc_hash::FxHashMap;

use crate::format::{self, DbName, FormatError, HEADER_LEN};
use crate::keys::{Interner, KeyId, ParsedKey, Sid, parse_key};
use crate::liveness::{PidState, namespace_prover, pid_state, proves_namespace};
use crate::lockfile::{self, LockError, LockKind};

mod family_lists;
mod key_runs;
mod plan;
mod read;
mod values;
mod varint;
mod warm;
mod watch;

pub use family_lists::FamilyList;
pub use key_runs::KeyRuns;
pub use values::SparseValues;

use family_lists::FamilyLists;
use watch::{Changes, Watch};

/// Default time between scans that stat every file although no event named it (a safety
/// net under the inotify watch).
pub const DEFAULT_FULL_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// How long a scan waits for the fork's archiver to release `lockfile`.
const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Source of [`FileState::serial`]: process-wide, so that two scanners never give the
/// same serial to different contents (the merge caches by serial).
static SERIALS: AtomicU64 = AtomicU64::new(1);

fn next_serial() -> u64 {
    SERIALS.fetch_add(1, Ordering::Relaxed)
}

/// Says whether the process with a pid is alive; replaces `kill(pid, 0)` and the
/// namespace check (see [`Scanner::set_liveness`]).
pub type LivenessProbe = Arc<dyn Fn(i32) -> bool + Send + Sync>;

/// Identity of a file's content generation: a changed inode or ctime (growth truncates,
/// re-creation makes a new inode) means "parse from scratch".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ident {
    dev: u64,
    ino: u64,
    size: u64,
    ctime: i64,
    ctime_ns: i64,
}

impl Ident {
    /// The identity of a regular file from its `stat` (`None`: not a regular file). Both
    /// the stat of a name and the stat of an open file go through here, so that the two
    /// compare equal for an unchanged file.
    fn of_regular(st: &FileStat) -> Option<Ident> {
        let regular =
            SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG;
        regular.then_some(Ident {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            ctime: st.st_ctime,
            ctime_ns: st.st_ctime_nsec,
        })
    }
}

/// The parsed content of one `.db` file, kept between scans.
#[derive(Debug)]
pub struct FileState {
    /// Base name.
    pub name: Box<str>,
    /// What the name says (type, gauge mode, pid label, owner pid).
    pub db: DbName,
    ident: Ident,
    used: usize,
    /// Changes whenever the content may have changed (every read): equal serials mean
    /// equal contents, which lets the merge cache what settled files contribute.
    serial: u64,
    /// Whether the content was read after its writer was proven dead: it is final until
    /// an event names the file (a new writer with the same pid must open it).
    final_read: bool,
    /// Whether the directory entry is a symlink.
    link: bool,
    /// Interned keys of the entries, in file order (see [`KeyRuns`]).
    key_runs: KeyRuns,
    entries: usize,
    /// The entries' values (see [`SparseValues`]).
    values: SparseValues,
    /// The entries' timestamps (gauge files only), stored like the values: only
    /// `mostrecent` (and the fork's `latest`) gauges set them, the others write `0.0`.
    timestamps: SparseValues,
    /// Distinct family names in order of first appearance, with the first key of each;
    /// shared by the files whose lists are equal (see [`FamilyLists`]).
    pub families: FamilyList,
}

impl FileState {
    /// Calls `f(index, key, value)` for every entry, in file order.
    pub fn for_each(&self, mut f: impl FnMut(usize, KeyId, f64)) {
        // Run by run rather than through a flattened iterator: this is the merge's
        // innermost loop (every entry of every file a merge or a reduction reads).
        let mut runs = self.key_runs.runs();
        let (mut key, mut left) = (0, 0);
        self.values.for_each(self.entries, |i, v| {
            if left == 0 {
                match runs.next() {
                    Some((start, len)) => (key, left) = (start, len),
                    None => return,
                }
            }
            f(i, key, v);
            key = key.wrapping_add(1);
            left -= 1;
        });
    }

    /// Calls `f(index, key, value)` for the entries whose value is not `+0.0`, in file
    /// order: what a merge visits where a zero changes nothing (most histogram buckets).
    pub fn for_each_nonzero(&self, mut f: impl FnMut(usize, KeyId, f64)) {
        let mut runs = self.key_runs.runs();
        // The current key run: its first key `start`, its entries `run_start..run_end`.
        let (mut start, mut run_start, mut run_end) = (0, 0, 0);
        self.values.for_each_nonzero(|i, v| {
            while i >= run_end {
                match runs.next() {
                    Some((s, len)) => {
                        (start, run_start) = (s, run_end);
                        run_end += len as usize;
                    }
                    None => return,
                }
            }
            f(i, start.wrapping_add((i - run_start) as KeyId), v);
        });
    }

    /// The entries' timestamps, read at increasing entry indexes.
    pub fn timestamps(&self) -> Timestamps<'_> {
        Timestamps(self.is_gauge().then(|| self.timestamps.cursor()))
    }

    /// The file's key runs `(first key, length)`, in file order.
    pub fn key_runs(&self) -> impl Iterator<Item = (KeyId, u32)> + '_ {
        self.key_runs.runs()
    }

    /// A state to hold a file's place while its state is being read (never served).
    fn placeholder() -> FileState {
        FileState {
            name: Box::default(),
            db: DbName {
                typ: "",
                mode: None,
                pid_label: None,
                owner_pid: None,
            },
            ident: Ident {
                dev: 0,
                ino: 0,
                size: 0,
                ctime: 0,
                ctime_ns: 0,
            },
            used: 0,
            serial: 0,
            final_read: false,
            link: false,
            key_runs: KeyRuns::default(),
            entries: 0,
            values: SparseValues::new(),
            timestamps: SparseValues::new(),
            families: Arc::new([]),
        }
    }

    fn is_placeholder(&self) -> bool {
        self.serial == 0
    }

    /// Identity of the content (a new value after every read of the file).
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// Whether the content is final: it was read after the writer was proven dead, and
    /// nothing changed the file since (the merge caches what such files contribute).
    pub fn is_settled(&self) -> bool {
        self.final_read
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether the file has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    fn push_key(&mut self, id: KeyId) {
        self.key_runs.push(id);
        self.entries += 1;
    }

    fn push_value(&mut self, i: usize, v: f64) {
        self.values.push(i, v);
    }

    /// Whether this is a gauge file (samples get a `pid` label, modes apply).
    pub fn is_gauge(&self) -> bool {
        self.db.typ == "gauge"
    }
}

/// The timestamps of a file's entries (see [`FileState::timestamps`]).
#[derive(Debug)]
pub struct Timestamps<'a>(Option<values::Cursor<'a>>);

impl Timestamps<'_> {
    /// The timestamp of entry `i` (`None` in a file that is not a gauge file, which has
    /// none); `i` must not decrease from one call to the next.
    #[inline]
    pub fn at(&mut self, i: usize) -> Option<f64> {
        self.0.as_mut().map(|c| c.at(i))
    }
}

/// Counters of one scan (also exported as the exporter's own metrics).
#[derive(Debug, Default, Clone)]
pub struct ScanStats {
    /// `.db` files in use after the scan.
    pub files: usize,
    /// Files parsed from scratch.
    pub parsed: usize,
    /// Files re-read for their values (known layout).
    pub refreshed: usize,
    /// Files not read because their writer is proven dead and they did not change.
    pub skipped: usize,
    /// Files kept without even a stat: no inotify event named them since the last scan.
    pub unchecked: usize,
    /// Bytes read from disk.
    pub bytes_read: u64,
    /// Entries held after the scan.
    pub entries: usize,
    /// Files skipped because they are corrupt or truncated.
    pub corrupt: usize,
    /// Files with no entries yet (zero length, or created but not initialised).
    pub empty: usize,
    /// `*.db` names upstream cannot use (unknown type, bad gauge name, not a file).
    pub foreign: usize,
    /// Files that vanished between listing and reading.
    pub vanished: usize,
    /// Whether the writers' PID namespace is visible (dead-file skipping is on).
    pub namespace_visible: bool,
    /// One message per skipped corrupt or foreign file, for the log.
    pub problems: Vec<String>,
}

/// Errors that fail a whole scan (only the directory itself).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The directory cannot be listed.
    #[error("cannot read directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The fork's `lockfile` could not be taken (shared) in time.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// Per-thread scratch vectors reused across files (fewer transient allocations, which
/// otherwise fragment the heap that holds the long-lived per-file state).
#[derive(Default)]
struct Scratch {
    buf: Vec<u8>,
    p: ParseScratch,
}

#[derive(Default)]
struct ParseScratch {
    /// Entries whose key was not interned: (entry index, key offset, key length).
    misses: Vec<(usize, usize, usize)>,
    values: Vec<f64>,
    tss: Vec<f64>,
    ids: Vec<KeyId>,
    /// Families of the file being parsed.
    seen: Vec<Sid>,
    /// Its family list with the first key of each (then shared, see [`FamilyLists`]).
    families: Vec<(Sid, KeyId)>,
}

/// A name of the directory's listing that is not (or no longer) a kept file: what a scan
/// needs to look at it again.
#[derive(Debug, Clone)]
struct Listed {
    name: Box<str>,
    /// `None`: not a name `prometheus_client` uses (reported, never read).
    db: Option<DbName>,
    /// Whether the entry is a symlink (always stat-ed: its target changes make no event).
    link: bool,
}

impl Listed {
    fn of(fs: &FileState) -> Listed {
        Listed {
            name: fs.name.clone(),
            db: Some(fs.db.clone()),
            link: fs.link,
        }
    }
}

/// One name a scan looks at, in name order: a file kept by the last scan (the listing
/// was reused), or a listed name with the last scan's state of it, if any.
enum Candidate {
    Known(Box<FileState>),
    Listed(Listed, Option<Box<FileState>>),
}

impl Candidate {
    fn owner_pid(&self) -> Option<i32> {
        match self {
            Candidate::Known(fs) => fs.db.owner_pid,
            Candidate::Listed(l, _) => l.db.as_ref().and_then(|d| d.owner_pid),
        }
    }
}

/// What a scan does with one name.
enum Decision {
    /// Vanished: forget it.
    Drop,
    /// Not a file we read (foreign name, not a regular file): look again next scan.
    Other,
    /// Keep the last scan's state without reading.
    Keep,
    /// Read it.
    Read(Read),
}

/// How a scan reads a file, and whether its writer was proven dead before the read.
#[derive(Debug, Clone, Copy)]
enum Read {
    /// Re-read the values of the known layout.
    Refresh { dead: bool },
    /// Parse from scratch.
    Full { dead: bool },
}

/// A name's place in the scan's result, in name order.
enum Planned {
    Ready(Box<FileState>),
    Job(usize, Listed),
    Other(Listed),
}

enum Job {
    /// The known file, and whether its writer was proven dead before this read.
    Refresh(Box<FileState>, bool),
    /// A new or changed file, and whether its writer was proven dead before this read.
    Full(Listed, bool),
}

enum Outcome {
    Ok(Box<FileState>, u64, bool),
    Empty,
    Corrupt(String),
    /// Not a regular file (a directory or FIFO named like a `.db` file).
    NotRegular(String),
    Vanished,
}

/// The kept files in name order. Boxed: the states are built boxed on the reader threads,
/// and a Vec of 300-byte structs growing by doubling is a large transient on a cold scan.
#[allow(
    clippy::vec_box,
    reason = "measured: -7 MB peak RSS at 2,000 processes"
)]
type Files = Vec<Box<FileState>>;

/// Reads a directory incrementally; owns the interner and the per-file state.
#[derive(Debug)]
pub struct Scanner {
    dir: PathBuf,
    /// The directory, opened by each scan (`None` before the first): files are opened and
    /// stat-ed relative to it.
    dir_fd: Option<File>,
    files: Files,
    interner: RwLock<Interner>,
    family_lists: FamilyLists,
    threads: usize,
    liveness: Option<Probe>,
    watch: Watch,
    /// Names of the last listing that are not kept files (empty, corrupt, foreign).
    others: Vec<Listed>,
    /// Whether a listing was made since the last reset (else the next scan lists).
    listed: bool,
    /// The owner pid that last proved the writers' PID namespace visible.
    prover: Option<i32>,
    /// Indexes of the files a warm scan must look at (not final yet, or symlinks).
    pending: Vec<u32>,
    /// Entries of all kept files.
    entries: usize,
    /// Changes whenever the list of files, a file's keys or families, or whether its
    /// content is final changed (see [`Scanner::layout`]).
    layout: u64,
    /// First serial of the last scan: files with a serial from it on were read by it.
    scan_start: u64,
    /// Whether the last scan read a file whose content is final (the next scan changes
    /// the layout, so that the merge reduces it with its neighbours then).
    fresh_final: bool,
}

/// A [`LivenessProbe`] that `#[derive(Debug)]` can print.
struct Probe(LivenessProbe);

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LivenessProbe")
    }
}

impl Scanner {
    /// A scanner for `dir` using up to `threads` threads (0 = one per core, at most 4).
    pub fn new(dir: impl Into<PathBuf>, threads: usize) -> Scanner {
        let threads = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(4)
        } else {
            threads
        };
        let dir = dir.into();
        Scanner {
            watch: Watch::new(&dir, Some(DEFAULT_FULL_CHECK_INTERVAL)),
            dir,
            dir_fd: None,
            files: Vec::new(),
            interner: RwLock::new(Interner::default()),
            family_lists: FamilyLists::default(),
            threads,
            liveness: None,
            others: Vec::new(),
            listed: false,
            prover: None,
            pending: Vec::new(),
            entries: 0,
            layout: 0,
            scan_start: 0,
            fresh_final: false,
        }
    }

    /// Sets the time between scans that stat every file although no inotify event named
    /// it; zero turns the watch off (every scan stats every file).
    pub fn set_full_check_interval(&mut self, every: std::time::Duration) {
        self.watch = Watch::new(&self.dir, Some(every));
    }

    /// Whether the inotify watch on the directory is active (otherwise every scan stats
    /// every file).
    pub fn watching(&self) -> bool {
        self.watch.active()
    }

    /// Replaces the liveness check of the files' owners (`kill(pid, 0)`, with the PID
    /// namespace check) by `probe`, and takes the namespace as visible. For tests, which
    /// write files in the names of pids they declare dead or alive.
    pub fn set_liveness(&mut self, probe: LivenessProbe) {
        self.liveness = Some(Probe(probe));
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The files of the last scan, sorted by name (the merge order).
    pub fn files(&self) -> &[Box<FileState>] {
        &self.files
    }

    /// The files and the interner, for merging.
    pub fn parts_mut(&mut self) -> (&[Box<FileState>], &mut Interner) {
        let interner = self
            .interner
            .get_mut()
            .unwrap_or_else(|poison| poison.into_inner());
        (&self.files, interner)
    }

    /// Forgets all per-file state (the next scan parses everything).
    pub fn reset(&mut self) {
        self.files.clear();
        self.others.clear();
        self.listed = false;
        self.watch.force_full();
    }

    /// Brings the per-file state up to date with the directory.
    pub fn scan(&mut self) -> Result<ScanStats, ScanError> {
        let mut stats = ScanStats::default();
        // Held while listing and reading, like the fork's collector: the fork's archiver
        // (exclusive) then never moves an archive in or a worker file out under us.
        let _lock = lockfile::lock(&self.dir, LockKind::Shared, false, LOCK_TIMEOUT)?;
        // Drained before listing: an event that comes later is seen by the next scan.
        let changes = self.watch.take();
        // Opened again by every scan: the directory may have been replaced since.
        let dir = File::open(&self.dir).map_err(|source| ScanError::Dir {
            path: self.dir.clone(),
            source,
        })?;
        self.dir_fd = Some(dir);
        self.scan_start = SERIALS.load(Ordering::Relaxed);
        if let Some(stats) = self.warm_scan(&changes) {
            return Ok(stats);
        }
        // No name appeared, vanished or moved: last scan's listing is still the listing,
        // and a warm scan makes no syscall for a file that no event named.
        let candidates = if changes.listing_unchanged() && self.listed {
            Self::relist(
                std::mem::take(&mut self.files),
                std::mem::take(&mut self.others),
            )
        } else {
            let names = self.list()?;
            self.listed = true;
            self.others.clear();
            Self::pair(names, std::mem::take(&mut self.files))
        };
        let visible = self.visible(&candidates);
        stats.namespace_visible = visible;
        let mut dead = self.dead_probe();

        let mut plan: Vec<Planned> = Vec::with_capacity(candidates.len());
        let mut jobs: Vec<Job> = Vec::new();
        for cand in candidates {
            let (listed, prev) = match cand {
                Candidate::Known(prev) => (None, Some(prev)),
                Candidate::Listed(l, prev) => (Some(l), prev),
            };
            let decision = {
                let (name, db, link) = match (&listed, &prev) {
                    (Some(l), _) => (&*l.name, l.db.as_ref(), l.link),
                    (None, Some(p)) => (&*p.name, Some(&p.db), p.link),
                    (None, None) => continue,
                };
                self.decide(
                    name,
                    db,
                    link,
                    prev.as_deref(),
                    &changes,
                    &mut stats,
                    |pid| visible && dead(pid),
                )
            };
            let listed = || match (listed, prev.as_deref()) {
                (Some(l), _) => Some(l),
                (None, p) => p.map(Listed::of),
            };
            match decision {
                Decision::Drop => {}
                Decision::Other => plan.extend(listed().map(Planned::Other)),
                Decision::Keep => plan.extend(prev.map(Planned::Ready)),
                Decision::Read(Read::Refresh { dead }) => {
                    let Some(prev) = prev else { continue };
                    plan.push(Planned::Job(jobs.len(), Listed::of(&prev)));
                    jobs.push(Job::Refresh(prev, dead));
                }
                Decision::Read(Read::Full { dead }) => {
                    let Some(l) = listed() else { continue };
                    plan.push(Planned::Job(jobs.len(), l.clone()));
                    jobs.push(Job::Full(l, dead));
                }
            }
        }

        drop(dead);
        let mut outcomes: Vec<Option<Outcome>> =
            self.run_jobs(jobs).into_iter().map(Some).collect();
        self.files.reserve_exact(plan.len());
        for planned in plan {
            let (outcome, listed) = match planned {
                Planned::Ready(fs) => (Outcome::Ok(fs, 0, false), None),
                Planned::Job(i, listed) => match outcomes[i].take() {
                    Some(o) => (o, Some(listed)),
                    None => continue,
                },
                Planned::Other(l) => {
                    self.others.push(l);
                    continue;
                }
            };
            match outcome {
                Outcome::Ok(fs, bytes, kind) => {
                    stats.bytes_read += bytes;
                    if bytes == 0 {
                        stats.skipped += 1;
                    } else if kind {
                        stats.parsed += 1;
                    } else {
                        stats.refreshed += 1;
                    }
                    stats.entries += fs.len();
                    self.files.push(fs);
                }
                // Looked at again by every scan (a writer initialises or completes it
                // through mmap, which makes no event).
                Outcome::Empty => {
                    stats.empty += 1;
                    self.others.extend(listed);
                }
                Outcome::Corrupt(msg) => {
                    stats.corrupt += 1;
                    stats.problems.push(msg);
                    self.others.extend(listed);
                }
                Outcome::NotRegular(msg) => {
                    stats.foreign += 1;
                    stats.problems.push(msg);
                    self.others.extend(listed);
                }
                Outcome::Vanished => stats.vanished += 1,
            }
        }
        stats.files = self.files.len();
        self.after_scan();
        Ok(stats)
    }

    /// A number that changes whenever the list of files, a file's keys or families, or
    /// whether a file's content is final changed: equal numbers mean only the values of
    /// files that are not final changed (the merge then reuses its plan).
    pub fn layout(&self) -> u64 {
        self.layout
    }

    /// Files with a [`serial`](FileState::serial) from this one on were read by the last
    /// scan. The merge reduces settled files only from the scan after (the first scrape
    /// after a start merges file by file, which is cheaper than building reductions).
    pub fn fresh_from(&self) -> u64 {
        self.scan_start
    }
}
