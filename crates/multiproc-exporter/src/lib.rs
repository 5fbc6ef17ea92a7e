//! `multiproc-exporter`: read, merge, expose and archive the per-process `.db` files that
//! Python's `prometheus_client` writes in multiprocess mode.
//!
//! The library has no HTTP in it: [`format`] reads and writes the files, [`scan`] keeps
//! per-file state between scrapes, [`merge`] implements `MultiProcessCollector`'s merge,
//! [`expose`] feeds merged families to the `exposition` crate's encoders, [`archive`] the
//! crash-safe compaction of dead processes' files, [`lockfile`] the postmates fork's `flock`
//! protocol. [`server`] is the HTTP sidecar built on them; [`extras`] adds what
//! multiprocess mode cannot serve ([`collectors`], [`procstats`]) and [`background`] writes
//! the scrape elsewhere ([`textfile`], [`push`]).
#![forbid(unsafe_code)]

pub mod archive;
pub mod background;
pub mod collector;
pub mod collectors;
pub mod expose;
pub mod extras;
pub mod format;
pub mod keys;
pub mod liveness;
pub mod lockfile;
pub mod merge;
pub mod outputs;
pub mod procstats;
pub mod push;
pub mod scan;
pub mod server;
pub mod textfile;
