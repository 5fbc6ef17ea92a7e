//! The binary's command line: directory selection, clear errors, help/version, graceful
//! shutdown on SIGTERM.

use std::process::Command;
use std::time::Duration;

use crate::helpers::*;

#[test]
fn missing_directory_is_a_clear_error() {
    let out = Command::new(exporter_bin())
        .args(["/nonexistent/mp-dir", "--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent/mp-dir") && err.contains("No such file"),
        "{err}"
    );

    let out = Command::new(exporter_bin())
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("PROMETHEUS_MULTIPROC_DIR")
        .env_remove("prometheus_multiproc_dir")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PROMETHEUS_MULTIPROC_DIR is not set"));
}

/// Logs that go to a pipe or a file (a collector, a container's log) carry no colour
/// codes; the helpers read the address from this same line.
#[test]
fn logs_to_a_pipe_are_plain_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(exporter_bin())
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let line = first_log_line(stderr, Duration::from_secs(10)).map(|(line, _)| line);
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("a log line within 10 s");
    assert!(!line.contains('\u{1b}'), "escape codes in {line:?}");
    assert!(listen_addr(&line).is_some(), "{line:?}");
}

#[test]
fn port_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let out = Command::new(exporter_bin())
        .arg(dir.path())
        .args(["--listen", &addr])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {addr}")) && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn help_and_version() {
    let out = Command::new(exporter_bin())
        .arg("--help")
        .output()
        .expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--listen",
        "--archive",
        "--drop-dead-all-gauges",
        "PROMETHEUS_MULTIPROC_DIR",
    ] {
        assert!(help.contains(opt), "{opt} missing from --help");
    }
    let out = Command::new(exporter_bin())
        .arg("--version")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("multiproc-exporter "));
}

#[test]
fn directory_from_env_legacy_name_and_sigterm_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    multiproc_exporter::format::write_file(
        &dir.path().join("counter_4200000.db"),
        [(br#"["envy", "envy_total", {}, "E"]"#.as_slice(), 3.0, 0.0)],
    )
    .expect("write");
    for var in ["PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"] {
        let addr = free_addr();
        let mut child = Command::new(exporter_bin())
            .args(["--listen", &addr.to_string()])
            .env_remove("PROMETHEUS_MULTIPROC_DIR")
            .env_remove("prometheus_multiproc_dir")
            .env(var, dir.path())
            .spawn()
            .expect("spawn");
        assert!(wait_until(Duration::from_secs(10), || try_get(
            addr,
            "/healthz",
            &[]
        )
        .is_ok()));
        let (status, _, body) = get(addr, "/metrics", &[]);
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&body).contains("envy_total 3.0\n"));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("signal");
        let mut status = None;
        assert!(wait_until(Duration::from_secs(10), || {
            status = child.try_wait().expect("wait");
            status.is_some()
        }));
        assert!(
            status.expect("exited").success(),
            "graceful shutdown exits 0"
        );
    }
}
