//! httpsd: Prometheus HTTP service discovery served from a directory of generators.
//!
//! The crate is a library with a thin binary on top, in layers (docs/architecture.md
//! draws them); a module imports only modules below it, which a test keeps true:
//!
//! - `cli`: every clap type and the conversion into each command's settings; the
//!   dispatch of a parsed command line. Nothing imports it.
//! - commands: `serve` (its settings and wiring), `check`, `scaleout` (`server-only`'s
//!   `frontend`, `worker-only`'s `worker`).
//! - `http`: the routes (targets, admin page, the one `/metrics`) and the operator
//!   layers; `admin` renders the admin page; `security` checks TLS and credentials (the
//!   accept loop is the `listener` crate, shared with multiproc-exporter).
//! - `engine` combines a path's generators into one response, through `cache` and
//!   `runner` (dynamic generators).
//! - below: `catalog`/`watch` (the tree in memory), `tree` (files and paths),
//!   `static_files`, `encode` (one-pass validation and encoding), `validate`, `pyjson`,
//!   `mem` (returning freed memory), `metrics`, `status`, `error`, `params`,
//!   `logging`, and `settings` (the settings vocabulary, importing nothing).
// One `unsafe` block in the whole crate, allowed where it stands: glibc's `malloc_trim`
// (mem.rs). The Python workers' pre-exec hook lives in the python-pool crate.
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
pub mod settings;
pub mod static_files;
pub mod status;
pub mod tree;
pub mod validate;
pub mod watch;
