//! Integration tests of the `httpsd` binary: each module starts the real binary (and
//! real python3, redis-server, ...) on loopback.

mod browser;
mod exec;
mod helpers;
mod ops;
mod serve_static;
