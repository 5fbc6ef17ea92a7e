//! `multiproc-exporter`: read, merge, expose and archive the per-process `.db` files that
//! Python's `prometheus_client` writes in multiprocess mode.
//!
//! The library has no HTTP in it: [`format`] reads and writes the files, [`scan`] keeps
//! per-file state between scrapes, [`merge`] implements `MultiProcessCollector`'s merge,
//! [`expose`] feeds merged families to the `exposition` crate's encoders, [`archive`] the
//! crash-safe compaction of dead processes' files. [`server`] is the HTTP sidecar built on them.
#![forbid(unsafe_code)]

pub mod archive;
pub mod collector;
pub mod expose;
pub mod format;
pub mod keys;
pub mod liveness;
pub mod merge;
pub mod scan;
pub mod server;
