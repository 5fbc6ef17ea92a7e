//! A supervised pool of long-lived Python worker processes.
//!
//! Each worker runs a small runner script (`runner.py`, beside this file) and serves
//! one call at a time over its own pipes, one JSON object per line: import a module
//! (again for every call, again when edited, or once for the worker's life: see
//! [`Import`]), call one of its functions with string keyword arguments, and answer
//! with the value as JSON. The runner moves that channel off fds 0 and 1 before any
//! user code runs, so what the code prints lands on the worker's stderr, which the
//! pool passes to an [`OutputSink`] attributed to the call that printed it. Every
//! worker leads its own process group: a call that outlives its deadline, a worker
//! that dies or breaks the protocol, or one that hit `MemoryError` under its memory
//! limit is killed with its whole group and replaced in the background; only the call
//! it held fails ([`PoolError`]).
//!
//! [`Pool::run_batch`] runs many modules in batches (one round trip per batch) over
//! lanes, one per worker; [`Warmth::Forked`] starts one interpreter that forks the
//! others once it has loaded the runner.
//!
//! Modules, lowest first: `polled_pipe`, `error`, `protocol` (wire types), `output`
//! (capture and attribution), `boot` (boot code, runner, code cache), `config`,
//! `process` (spawn, `/proc`, kill: the only `unsafe`), `worker`, `pool`, `batch`.

#![deny(unsafe_code)]

mod batch;
mod boot;
mod config;
mod error;
mod output;
mod polled_pipe;
mod pool;
mod process;
mod protocol;
mod worker;

pub use batch::{BatchEvent, BatchItem};
pub use config::{PoolSettings, Warmth};
pub use error::{PoolError, StartError};
pub use output::{LogOutput, OutputSink};
pub use pool::Pool;
pub use protocol::{Call, Entry, Hello, Import, RawResult, parse_result};
