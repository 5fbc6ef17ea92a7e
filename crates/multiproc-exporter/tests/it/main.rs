//! Integration tests of multiproc-exporter against the real Python prometheus_client.
//! Requires `python3` with `prometheus-client==0.26.0` (`pip install prometheus-client==0.26.0`).

mod archive;
mod cli;
mod collectors;
mod concurrent;
mod connections;
mod daemons;
mod fork;
mod helpers;
mod incremental;
mod oracle;
mod procstats;
mod prop_db;
mod push;
mod robustness;
mod textfile;
mod watch;
