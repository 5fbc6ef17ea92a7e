//! Connection hygiene of the exporter (the shared listener crate): a connection limit,
//! fairness under a slowloris client, --header-timeout and --idle-timeout.

use std::time::Duration;

use crate::helpers::{Exporter, exporter_bin};

#[path = "../../../listener/tests/common/clients.rs"]
mod clients;

#[test]
fn slowloris_over_the_limit_does_not_lock_out_a_scraper() {
    let dir = tempfile::tempdir().unwrap();
    // A header timeout far longer than the test: only the fairness rule lets clients in.
    let e = Exporter::start(
        dir.path(),
        &["--connection-limit", "20", "--header-timeout", "300"],
    );
    clients::assert_served_under_slowloris(e.addr, "/metrics", 20);
}

#[test]
fn trickling_client_is_dropped_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let e = Exporter::start(dir.path(), &["--header-timeout", "2"]);
    let held = clients::trickle_until_closed(e.addr);
    assert!(
        held >= Duration::from_millis(1500),
        "closed too early: {held:?}"
    );
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // The header timeout is shorter: an idle connection must be held to the idle one.
    let e = Exporter::start(
        dir.path(),
        &["--header-timeout", "1", "--idle-timeout", "3"],
    );
    let idle = clients::idle_until_closed(e.addr, "/healthz");
    assert!(
        idle >= Duration::from_millis(2500),
        "closed too early: {idle:?}"
    );
}

#[test]
fn bad_connection_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--connection-limit", "0"),
        ("--header-timeout", "0"),
        ("--idle-timeout", "-1"),
        ("--idle-timeout", "nan"),
    ] {
        let out = std::process::Command::new(exporter_bin())
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", &format!("{flag}={value}")])
            .output()
            .expect("run the exporter");
        assert!(!out.status.success(), "{flag} {value} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{flag} {value}: {err}");
    }
}
