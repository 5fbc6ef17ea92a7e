//! Connection hygiene of `serve` (the shared listener crate): a slowloris client holding
//! more connections than the limit does not lock others out, a client trickling its
//! headers is dropped after --header-timeout, an idle keep-alive connection after
//! --idle-timeout.

use std::net::SocketAddr;
use std::time::Duration;

use crate::helpers::{Server, Tree};

#[path = "../../../listener/tests/common/clients.rs"]
mod clients;

const BODY: &str = r#"[{"targets":["10.0.0.7:9100"]}]"#;

fn serve(extra: &[&str]) -> (Tree, Server, SocketAddr) {
    let t = Tree::new();
    t.write("static/s.json", BODY);
    let s = Server::serve(t.root(), extra);
    let addr = s.addr.parse().expect("server address");
    (t, s, addr)
}

#[test]
fn slowloris_over_the_limit_does_not_lock_out_a_client() {
    // A header timeout far longer than the test: only the fairness rule lets clients in.
    let (_t, _s, addr) = serve(&["-c", "20", "--header-timeout", "300"]);
    clients::assert_served_under_slowloris(addr, "/targets/static", 20);
}

#[test]
fn trickling_client_is_dropped_after_the_header_timeout() {
    let (_t, _s, addr) = serve(&["--header-timeout", "2"]);
    let held = clients::trickle_until_closed(addr);
    assert!(
        held >= Duration::from_millis(1500),
        "closed too early: {held:?}"
    );
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    // The header timeout is shorter: an idle connection must be held to the idle one.
    let (_t, _s, addr) = serve(&["--header-timeout", "1", "--idle-timeout", "3"]);
    let idle = clients::idle_until_closed(addr, "/targets/static");
    assert!(
        idle >= Duration::from_millis(2500),
        "closed too early: {idle:?}"
    );
}

#[test]
fn bad_connection_options_are_refused() {
    let t = Tree::new();
    for (flag, value) in [
        ("--connection-limit", "0"),
        ("--header-timeout", "0"),
        ("--idle-timeout", "-1"),
        ("--idle-timeout", "nan"),
    ] {
        let out = std::process::Command::new(crate::helpers::bin())
            .args([
                "serve",
                &t.root().display().to_string(),
                "-p",
                "0",
                &format!("{flag}={value}"),
            ])
            .output()
            .expect("run httpsd");
        assert!(!out.status.success(), "{flag} {value} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{flag} {value}: {err}");
    }
}
