//! One object that turns a directory into merged families: an incremental [`Scanner`]
//! plus a [`Merger`], the library's equivalent of `MultiProcessCollector.collect()`.

use std::path::PathBuf;

use crate::merge::{MergeStats, MergedFamily, Merger};
use crate::scan::{LivenessProbe, ScanError, ScanStats, Scanner};

/// Result of one collection.
#[derive(Debug, Clone)]
pub struct Collected {
    /// Merged families in output order.
    pub families: Vec<MergedFamily>,
    /// What the scan did.
    pub scan: ScanStats,
    /// What the merge noticed.
    pub merge: MergeStats,
}

/// Reads and merges a directory, keeping state between calls.
#[derive(Debug)]
pub struct Collector {
    scanner: Scanner,
    merger: Merger,
}

impl Collector {
    /// A collector for `dir` (`threads` = 0: one per core, at most 4).
    pub fn new(dir: impl Into<PathBuf>, threads: usize) -> Collector {
        Collector {
            scanner: Scanner::new(dir, threads),
            merger: Merger::new(),
        }
    }

    /// Replaces the owners' liveness check (see [`Scanner::set_liveness`]).
    pub fn set_liveness(&mut self, probe: LivenessProbe) {
        self.scanner.set_liveness(probe);
    }

    /// Sets the safety-net interval of full scans (see [`Scanner::set_full_check_interval`]).
    pub fn set_full_check_interval(&mut self, every: std::time::Duration) {
        self.scanner.set_full_check_interval(every);
    }

    /// Scans the directory and merges it.
    pub fn collect(&mut self) -> Result<Collected, ScanError> {
        let t0 = std::time::Instant::now();
        let scan = self.scanner.scan()?;
        let t1 = std::time::Instant::now();
        let (layout, fresh_from) = (self.scanner.layout(), self.scanner.fresh_from());
        let (files, interner) = self.scanner.parts_mut();
        let (families, merge) = self.merger.merge(files, interner, layout, fresh_from);
        tracing::debug!(
            scan_ms = (t1 - t0).as_secs_f64() * 1e3,
            merge_ms = t1.elapsed().as_secs_f64() * 1e3,
            files = scan.files,
            parsed = scan.parsed,
            refreshed = scan.refreshed,
            "collected"
        );
        Ok(Collected {
            families,
            scan,
            merge,
        })
    }

    /// Forgets per-file state (after the archiver changed the directory, for instance).
    pub fn reset(&mut self) {
        self.scanner.reset();
    }
}
