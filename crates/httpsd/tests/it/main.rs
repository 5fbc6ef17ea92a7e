//! Integration tests of the `httpsd` binary: each module starts the real binary (and
//! real python3, redis-server, ...) on loopback.

mod browser;
mod cache;
mod check;
mod connections;
mod e2e_prometheus;
mod exec;
mod helpers;
mod ops;
mod props;
mod python;
mod rewrite;
mod scale;
mod scaleout;
mod scaleout_listener;
mod serve_static;
