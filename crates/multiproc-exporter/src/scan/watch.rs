//! Which files of the directory may have changed since the last scan, from an inotify
//! watch on the directory, so that a scan stats only those and keeps the files of dead
//! writers that no event named without a `statx` each (a third of a warm scrape at 2,000
//! writers was stat-ing unchanged files).
//!
//! Exactness: every way a kept file can change goes through a syscall that makes an event
//! naming it: re-creation or removal (`CREATE`, `DELETE`, `MOVED_*`), `write`/`truncate`
//! (`MODIFY`, `CLOSE_WRITE`), `chmod`/link counts (`ATTRIB`), and a new process with a
//! reused pid, which writes through `mmap` (no event) but must `open` the file first
//! (`OPEN`). A lost event (queue overflow), a broken watch (directory removed or moved)
//! or the periodic safety net make the next scan a full one (every file stat-ed).
//! Symlinked files are always stat-ed (a change of their target makes no event here).

use rustc_hash::FxHashSet;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchMask};

/// What a scan may trust about the files it kept last time.
#[derive(Debug)]
pub(crate) enum Changes {
    /// Stat every file (first scan, lost events, no watch, safety net).
    All,
    /// Only these names may have changed since the last scan; `relist`: some `.db` name
    /// may have appeared, vanished or moved (the directory must be listed again).
    Named {
        /// Hashes of the names: a collision only makes a scan stat one more file, and a
        /// cold scan's own opens name every file (tens of thousands of strings otherwise).
        names: FxHashSet<u64>,
        /// The names themselves while they are few (`None` past [`MAX_LISTED`]).
        listed: Option<Vec<String>>,
        relist: bool,
    },
}

impl Changes {
    /// Whether the file `name`, kept by the last scan, must be stat-ed again.
    pub(crate) fn may_have_changed(&self, name: &str) -> bool {
        match self {
            Changes::All => true,
            Changes::Named { names, .. } => names.contains(&name_hash(name)),
        }
    }

    /// Whether the last scan's listing is still the directory's listing.
    pub(crate) fn listing_unchanged(&self) -> bool {
        matches!(self, Changes::Named { relist: false, .. })
    }
}

/// An inotify watch on the directory (none when it cannot be set up: then every scan is
/// a full one, as before). It is set up by [`arm`](Watch::arm) after the first scan, not
/// before: that scan stats and reads every file anyway, and a watch in place would make
/// the kernel queue an event for each of its own opens (measured: 6–9 % of a cold scan's
/// CPU in fsnotify at 16,000 files).
pub(crate) struct Watch {
    inotify: Option<Inotify>,
    /// The directory, while the watch is still to be set up.
    pending: Option<std::path::PathBuf>,
    /// Time between forced full scans (`None`: never forced).
    full_every: Option<Duration>,
    last_full: Option<Instant>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("active", &self.inotify.is_some())
            .field("full_every", &self.full_every)
            .finish()
    }
}

/// The events that can mean a kept file changed (see the module comment).
fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::OPEN
        | WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::CLOSE_WRITE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
}

impl Watch {
    /// Starts watching `dir`; `full_every` = time between forced full scans (`None` or
    /// zero: never watch, every scan is full).
    pub(crate) fn new(dir: &Path, full_every: Option<Duration>) -> Watch {
        let enabled = full_every.is_none_or(|d| !d.is_zero());
        Watch {
            inotify: None,
            pending: enabled.then(|| dir.to_path_buf()),
            full_every,
            last_full: None,
            buf: vec![0; 64 * 1024],
        }
    }

    /// Whether the watch is set up.
    pub(crate) fn active(&self) -> bool {
        self.inotify.is_some()
    }

    /// Sets the watch up if it is not yet (once; call after a scan that could list the
    /// directory, so that a directory that appears after start is watched too). The next
    /// [`take`](Self::take) answers [`Changes::All`]: what changed before the watch
    /// existed made no event.
    pub(crate) fn arm(&mut self) {
        let Some(dir) = self.pending.take() else {
            return;
        };
        match start(&dir) {
            Ok(ino) => {
                self.inotify = Some(ino);
                self.last_full = None;
            }
            Err(e) => tracing::warn!(
                dir = %dir.display(),
                error = %e,
                "inotify watch unavailable: every scrape stats every file"
            ),
        }
    }

    /// Forces the next [`take`](Self::take) to answer [`Changes::All`].
    pub(crate) fn force_full(&mut self) {
        self.last_full = None;
    }

    /// Drains the events queued since the last call and says what may have changed.
    /// Call before listing the directory: an event that arrives later is seen next time.
    pub(crate) fn take(&mut self) -> Changes {
        let now = Instant::now();
        let due = match (self.last_full, self.full_every) {
            (None, _) => true,
            (Some(t), Some(every)) => now.duration_since(t) >= every,
            (Some(_), None) => false,
        };
        let Some(ino) = self.inotify.as_mut() else {
            return Changes::All;
        };
        let mut names = FxHashSet::default();
        let mut listed = Some(Vec::new());
        let mut lost = false;
        let mut relist = false;
        // Bounded: the queue holds at most `max_queued_events` (16,384 by default) events.
        for _ in 0..4096 {
            match ino.read_events(&mut self.buf) {
                Ok(events) => {
                    for e in events {
                        if e.mask.intersects(
                            EventMask::Q_OVERFLOW
                                | EventMask::IGNORED
                                | EventMask::DELETE_SELF
                                | EventMask::MOVE_SELF,
                        ) {
                            lost = true;
                        }
                        if let Some(name) = e.name.and_then(|n| n.to_str()) {
                            relist |= e.mask.intersects(
                                EventMask::CREATE
                                    | EventMask::DELETE
                                    | EventMask::MOVED_FROM
                                    | EventMask::MOVED_TO,
                            ) && super::plan::is_listed(name);
                            if names.insert(name_hash(name)) {
                                match &mut listed {
                                    Some(l) if l.len() < MAX_LISTED => l.push(name.to_owned()),
                                    _ => listed = None,
                                }
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "inotify read failed: full scans from now on");
                    self.inotify = None;
                    return Changes::All;
                }
            }
        }
        if lost {
            // The watch on a removed or moved directory is gone for good.
            tracing::warn!("inotify events lost or watch removed: full scan");
        }
        if due || lost {
            self.last_full = Some(now);
            Changes::All
        } else {
            Changes::Named {
                names,
                listed,
                relist,
            }
        }
    }
}

/// Event names kept as strings up to this many (a warm scan finds their files by name);
/// past it, a warm scan asks every file whether it was named.
const MAX_LISTED: usize = 1024;

fn name_hash(name: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(name)
}

fn start(dir: &Path) -> io::Result<Inotify> {
    let ino = Inotify::init()?;
    ino.watches().add(dir, mask())?;
    Ok(ino)
}
