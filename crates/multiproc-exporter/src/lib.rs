//! `multiproc-exporter`: read, merge, expose and archive the per-process `.db` files that
//! Python's `prometheus_client` writes in multiprocess mode.
//!
//! The library has no HTTP in it: [`format`] reads and writes the files, [`scan`] keeps
//! per-file state between scrapes, [`merge`] implements `MultiProcessCollector`'s merge,
//! [`expose`] the text encoders, [`archive`] the crash-safe compaction of dead processes'
//! files, [`lockfile`] the postmates fork's `flock` protocol. [`server`] is the HTTP
//! sidecar built on them.
#![forbid(unsafe_code)]

pub mod archive;
pub mod collector;
pub mod expose;
pub mod format;
pub mod keys;
pub mod liveness;
pub mod lockfile;
pub mod merge;
pub mod scan;
pub mod server;
