//! The current view of the target tree: the scan's listing plus the loaded static
//! files, published as one immutable snapshot that requests read without locks.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::metrics::Metrics;
use crate::static_files::{INVALID_GRACE, SETTLE, StaticResult, StaticStore};
use crate::status::StatusBoard;
use crate::tree::{self, Listing};

/// An immutable view of the tree at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Generators and directories (static files that have not settled yet are left out).
    pub listing: Listing,
    /// Loaded static files by relative path.
    pub statics: HashMap<String, StaticResult>,
    /// Increases whenever the content of the tree changes.
    pub generation: u64,
}

/// Holds the current snapshot and rebuilds it on demand.
pub struct Catalog {
    root: PathBuf,
    current: ArcSwap<Snapshot>,
    store: Mutex<StaticStore>,
    warned: Mutex<HashSet<String>>,
    metrics: Arc<Metrics>,
    status: Arc<StatusBoard>,
}

impl Catalog {
    /// A catalog of `root` (canonical), scanned once before returning.
    pub fn new(root: &Path, max_file_size: u64, metrics: Arc<Metrics>) -> Catalog {
        let catalog = Catalog {
            root: root.to_path_buf(),
            current: ArcSwap::from_pointee(Snapshot::default()),
            store: Mutex::new(StaticStore::new(max_file_size)),
            warned: Mutex::new(HashSet::new()),
            metrics,
            status: Arc::new(StatusBoard::new()),
        };
        // At startup nothing is known yet, so wait (briefly) for files being written
        // instead of serving a tree that lacks them: long enough for a freshly written
        // invalid file to outlast its grace period and show as the error it is.
        let deadline = std::time::Instant::now() + INVALID_GRACE + 2 * SETTLE;
        while let Some(wait) = catalog.refresh() {
            if std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(wait);
        }
        catalog
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The per-generator status board (last runs, errors, cache state).
    pub fn status(&self) -> &Arc<StatusBoard> {
        &self.status
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Rescans the tree and publishes a new snapshot if anything changed.
    ///
    /// Blocking (file system work). Returns how soon to look again because a file
    /// is still being written.
    pub fn refresh(&self) -> Option<Duration> {
        let mut listing = tree::scan(&self.root);
        self.warn_once(&listing);
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let recheck = store.refresh(
            listing.generators.iter().filter(|g| g.kind.is_static()),
            SystemTime::now(),
        );
        // A static file that has never settled is not part of the tree yet.
        listing
            .generators
            .retain(|g| !g.kind.is_static() || store.get(&g.rel).is_some());
        let statics: HashMap<String, StaticResult> = listing
            .generators
            .iter()
            .filter(|g| g.kind.is_static())
            .filter_map(|g| store.get(&g.rel).map(|r| (g.rel.clone(), r.clone())))
            .collect();
        drop(store);
        let old = self.current.load();
        if old.generation > 0 && same_content(&old, &listing, &statics) {
            return recheck;
        }
        for g in listing.generators.iter().filter(|g| g.kind.is_static()) {
            if let Some(result) = statics.get(&g.rel) {
                let changed = old.statics.get(&g.rel) != Some(result);
                if changed {
                    self.metrics.observe_static_load(&g.rel, result);
                    self.status.record_static(&g.rel, result);
                }
            }
        }
        // Deleted generators leave the admin page and the board's memory.
        let present: HashSet<&str> = listing.generators.iter().map(|g| g.rel.as_str()).collect();
        self.status.retain(|rel| present.contains(rel));
        self.current.store(Arc::new(Snapshot {
            listing,
            statics,
            generation: old.generation + 1,
        }));
        recheck
    }

    fn warn_once(&self, listing: &Listing) {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        for s in listing
            .skipped
            .iter()
            .chain(&listing.unsafe_links)
            .chain(&listing.unreadable)
        {
            if warned.insert(format!("{}\0{}", s.rel, s.reason)) {
                tracing::warn!(file = %s.rel, reason = %s.reason, "skipped");
            }
        }
    }
}

fn same_content(
    old: &Snapshot,
    listing: &Listing,
    statics: &HashMap<String, StaticResult>,
) -> bool {
    old.listing.generators == listing.generators
        && old.listing.dirs == listing.dirs
        && old.listing.unreadable == listing.unreadable
        && old.statics == *statics
}
