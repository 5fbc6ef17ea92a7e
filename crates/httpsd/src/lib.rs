//! httpsd: Prometheus HTTP service discovery served from a directory of generators.
//!
//! The crate is a library with a thin binary on top. Each module owns one concern:
//! the `tree` knows files, `static_files` loads JSON/YAML, `runner` runs dynamic
//! generators, `engine` combines a path's generators into one response, `validate`
//! says what Prometheus accepts, `http` knows HTTP, `server` owns the accept loop.
// Two `unsafe` blocks in the whole crate, allowed where they stand: the pre-exec hook
// of the Python workers (runner/python.rs) and glibc's `malloc_trim` (mem.rs).
#![deny(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod catalog;
pub mod check;
pub mod cli;
pub mod encode;
pub mod engine;
pub mod error;
pub mod http;
pub mod log_writer;
pub mod logging;
pub mod mem;
pub mod metrics;
pub mod params;
pub mod pyjson;
pub mod runner;
pub mod scaleout;
pub mod security;
pub mod sentry_report;
pub mod serve;
pub mod server;
pub mod settings;
pub mod static_files;
pub mod status;
pub mod tree;
pub mod validate;
pub mod watch;
