//! The postmates fork's `lockfile` protocol: `flock` on `<dir>/lockfile`, shared while a
//! collector reads the directory, exclusive while the archiver folds dead workers' files
//! into archives. Taking part in it means the fork's archiver and ours never fold the same
//! pid twice during a rolling switch, and neither reader sees half an archive pass.
//!
//! Locks are polled with a deadline (`flock` has no timeout) so that a stuck holder fails
//! one scrape or pass instead of hanging the exporter.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock file's name (the fork's `advisory_lock(filename="lockfile")`).
pub const LOCKFILE: &str = "lockfile";

/// Shared (readers) or exclusive (the archiver).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// `LOCK_SH`, what the fork's `MultiProcessCollector.collect()` takes.
    Shared,
    /// `LOCK_EX`, what the fork's `archive_metrics()` takes.
    Exclusive,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process held the lock for longer than the deadline.
    #[error("{path} stayed locked for {waited:?} (another archiver or reader holds it)")]
    Timeout {
        /// The lock file.
        path: String,
        /// How long we waited.
        waited: Duration,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// Why.
        source: io::Error,
    },
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _lock: Flock<File>,
}

/// Takes the lock of `dir`. Without `create`, a directory that has no lock file yet is not
/// locked (`Ok(None)`): readers never write to the directory, and the fork's own reader
/// and archiver create the file before they first use it.
pub fn lock(
    dir: &Path,
    kind: LockKind,
    create: bool,
    timeout: Duration,
) -> Result<Option<DirLock>, LockError> {
    let path = dir.join(LOCKFILE);
    let shown = || path.display().to_string();
    let opened = if create {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
    } else {
        File::open(&path)
    };
    let mut file = match opened {
        Ok(f) => f,
        Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LockError::Io {
                path: shown(),
                source,
            });
        }
    };
    let t0 = Instant::now();
    let arg = match kind {
        LockKind::Shared => FlockArg::LockSharedNonblock,
        LockKind::Exclusive => FlockArg::LockExclusiveNonblock,
    };
    // Bounded: at most `timeout`, in 5 ms steps.
    loop {
        match Flock::lock(file, arg) {
            Ok(lock) => return Ok(Some(DirLock { _lock: lock })),
            Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) if t0.elapsed() < timeout => {
                file = f;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(LockError::Timeout {
                    path: shown(),
                    waited: t0.elapsed(),
                });
            }
            Err((_, e)) => {
                return Err(LockError::Io {
                    path: shown(),
                    source: e.into(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_coexist_and_exclusive_waits() {
        let d = tempfile::tempdir().unwrap();
        let short = Duration::from_millis(30);
        assert!(
            lock(d.path(), LockKind::Shared, false, short)
                .unwrap()
                .is_none()
        );
        let ex = lock(d.path(), LockKind::Exclusive, true, short).unwrap();
        assert!(ex.is_some());
        assert!(matches!(
            lock(d.path(), LockKind::Shared, false, short),
            Err(LockError::Timeout { .. })
        ));
        drop(ex);
        let a = lock(d.path(), LockKind::Shared, false, short).unwrap();
        let b = lock(d.path(), LockKind::Shared, false, short).unwrap();
        assert!(a.is_some() && b.is_some());
        assert!(lock(d.path(), LockKind::Exclusive, true, short).is_err());
    }
}
