//! What the archiver does with each file of a dead process, and how archive entries
//! combine: the archive targets in upstream's and the postmates fork's formats (names,
//! stored timestamps), judging a file's format by its keys, and the accumulator that
//! merges entries into a new archive.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use crate::format::{self, DbName, FormatError};
use crate::keys::parse_key;

/// Archiver options.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// Delete `all`/`liveall` gauge files of dead processes (their per-pid series vanish).
    pub drop_dead_all_gauges: bool,
    /// At most this many dead pids per pass (bounds the time scrapes wait).
    pub max_pids_per_pass: usize,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            drop_dead_all_gauges: false,
            max_pids_per_pass: 500,
        }
    }
}

/// How a source file of a dead process is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Disposition {
    /// Fold into this archive.
    Merge(Archive),
    /// Delete (after staging).
    Delete,
    /// Leave alone.
    Keep,
}

/// How an archive's entries combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Target {
    Counter,
    Histogram,
    Summary,
    GaugeMin,
    GaugeMax,
    GaugeSum,
    GaugeMostRecent,
    GaugeLatest,
}

impl Target {
    const ALL: [Target; 8] = [
        Target::Counter,
        Target::Histogram,
        Target::Summary,
        Target::GaugeMin,
        Target::GaugeMax,
        Target::GaugeSum,
        Target::GaugeMostRecent,
        Target::GaugeLatest,
    ];
}

/// One archive file: a target in upstream's or the fork's key format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Archive {
    target: Target,
    fork: bool,
}

impl Archive {
    /// The archive's file name, `None` when the format has no such archive (the fork has
    /// no `sum`/`mostrecent` gauges, upstream no `latest`).
    pub(super) fn file_name(self) -> Option<&'static str> {
        Some(match (self.fork, self.target) {
            (false, Target::Counter) => "counter_archive.db",
            (false, Target::Histogram) => "histogram_archive.db",
            (false, Target::Summary) => "summary_archive.db",
            (false, Target::GaugeMin) => "gauge_min_archive.db",
            (false, Target::GaugeMax) => "gauge_max_archive.db",
            (false, Target::GaugeSum) => "gauge_sum_archive.db",
            (false, Target::GaugeMostRecent) => "gauge_mostrecent_archive.db",
            // The names the fork's `_get_archive_paths` uses (plus summary.db).
            (true, Target::Counter) => "counter.db",
            (true, Target::Histogram) => "histogram.db",
            (true, Target::Summary) => "summary.db",
            (true, Target::GaugeMin) => "gauge_min.db",
            (true, Target::GaugeMax) => "gauge_max.db",
            (true, Target::GaugeLatest) => "gauge_latest.db",
            _ => return None,
        })
    }

    pub(super) fn from_file_name(name: &str) -> Option<Archive> {
        Target::ALL
            .into_iter()
            .flat_map(|target| [false, true].map(|fork| Archive { target, fork }))
            .find(|a| a.file_name() == Some(name))
    }

    /// Timestamp written for an entry: the fork stores `+inf` ("none") for everything but
    /// `latest` gauges; upstream stores 0.0 except for `mostrecent`.
    fn stored_ts(self, ts: f64) -> f64 {
        match (self.fork, self.target) {
            (false, Target::GaugeMin | Target::GaugeMax | Target::GaugeMostRecent) => ts,
            (false, _) => 0.0,
            (true, Target::GaugeLatest) => ts,
            (true, _) => f64::INFINITY,
        }
    }
}

/// Which key format a file's entries have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavour {
    Upstream,
    Fork,
    /// No entries: nothing to fold.
    Empty,
    /// Both formats in one file: left alone (the scan reads it entry by entry).
    Mixed,
}

/// Reads a file's keys to judge its format; an unreadable file counts as upstream, so
/// that the commit step parks it as corrupt.
pub(super) fn flavour(path: &Path, buf: &mut Vec<u8>) -> Flavour {
    let Ok(mut f) = fs::File::open(path) else {
        return Flavour::Upstream;
    };
    let Ok(used) = format::read_used(&mut f, buf) else {
        return Flavour::Upstream;
    };
    let (mut fork, mut up) = (0usize, 0usize);
    let r = format::for_each_entry(buf, format::HEADER_LEN, used, |e| {
        match parse_key(e.key).map(|k| k.is_fork()) {
            Ok(true) => fork += 1,
            _ => up += 1,
        }
    });
    match (r.is_ok(), fork, up) {
        (false, _, _) => Flavour::Upstream,
        (true, 0, 0) => Flavour::Empty,
        (true, _, 0) => Flavour::Fork,
        (true, 0, _) => Flavour::Upstream,
        _ => Flavour::Mixed,
    }
}

/// How a file is handled; `flavour` is asked only for files that would be merged.
pub(super) fn disposition(
    db: &DbName,
    flavour: impl FnOnce() -> Flavour,
    opts: &ArchiveOptions,
) -> Disposition {
    let target = match (db.typ, db.mode.as_deref()) {
        ("counter", _) => Target::Counter,
        ("histogram", _) => Target::Histogram,
        ("summary", _) => Target::Summary,
        ("gauge", Some("min")) => Target::GaugeMin,
        ("gauge", Some("max")) => Target::GaugeMax,
        ("gauge", Some("sum")) => Target::GaugeSum,
        ("gauge", Some("mostrecent")) => Target::GaugeMostRecent,
        ("gauge", Some("latest")) => Target::GaugeLatest,
        ("gauge", Some("liveall" | "livemin" | "livemax" | "livesum" | "livemostrecent")) => {
            return Disposition::Delete;
        }
        ("gauge", Some("all")) if opts.drop_dead_all_gauges => return Disposition::Delete,
        _ => return Disposition::Keep,
    };
    let fork = match flavour() {
        Flavour::Empty => return Disposition::Delete,
        Flavour::Mixed => return Disposition::Keep,
        Flavour::Fork => true,
        Flavour::Upstream => false,
    };
    let archive = Archive { target, fork };
    match archive.file_name() {
        Some(_) => Disposition::Merge(archive),
        None => Disposition::Keep,
    }
}

/// Entries of one archive being built: key bytes in first-seen order.
#[derive(Default)]
pub(super) struct Acc {
    pub(super) order: Vec<Vec<u8>>,
    pub(super) values: HashMap<Vec<u8>, (f64, f64)>,
}

impl Acc {
    fn add(&mut self, archive: Archive, key: &[u8], v: f64, ts: f64) {
        let target = archive.target;
        match self.values.get_mut(key) {
            None => {
                self.order.push(key.to_vec());
                // Sums start from 0.0 like Python's defaultdict(float).
                let first = match target {
                    Target::GaugeMin
                    | Target::GaugeMax
                    | Target::GaugeMostRecent
                    | Target::GaugeLatest => v,
                    _ => 0.0 + v,
                };
                self.values
                    .insert(key.to_vec(), (first, archive.stored_ts(ts)));
            }
            Some(cur) => match target {
                Target::GaugeMin => {
                    if v < cur.0 {
                        cur.0 = v
                    }
                }
                Target::GaugeMax => {
                    if v > cur.0 {
                        cur.0 = v
                    }
                }
                Target::GaugeMostRecent => {
                    if cur.1 < ts {
                        *cur = (v, ts)
                    }
                }
                // The fork merges one dead pid at a time, its files before the archive,
                // and Python's `max` keeps the first of equal timestamps: a later file
                // wins ties. `+inf` ("none") never replaces a real timestamp.
                Target::GaugeLatest => {
                    if ts != f64::INFINITY && (cur.1 == f64::INFINITY || ts >= cur.1) {
                        *cur = (v, ts)
                    }
                }
                _ => cur.0 += v,
            },
        }
    }

    /// Adds every entry of a file (one buffer at a time: memory stays at one file).
    pub(super) fn add_file(
        &mut self,
        archive: Archive,
        path: &Path,
        buf: &mut Vec<u8>,
    ) -> Result<(), FormatError> {
        let mut f = fs::File::open(path)?;
        let used = format::read_used(&mut f, buf)?;
        // Validate first so that a corrupt file adds nothing.
        format::for_each_entry(buf, format::HEADER_LEN, used, |_| {})?;
        format::for_each_entry(buf, format::HEADER_LEN, used, |e| {
            self.add(archive, e.key, e.value, e.timestamp)
        })
    }
}
