//! `--push-to`: the merged scrape pushed to a real Pushgateway (read back from its
//! `/metrics`), on the interval and once more at SIGTERM; failures counted, scrapes unharmed.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::daemons::*;
use crate::helpers::*;

fn pushgateway() -> Daemon {
    // No persistence file: nothing outlives the test.
    start_daemon(
        "prometheus-pushgateway",
        "prometheus-pushgateway",
        &["--persistence.file="],
    )
}

#[test]
fn pushgateway_holds_the_pushed_series_and_the_last_push_at_sigterm() {
    require_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    run_py("workers.py", &[d, "count", "2", "3"]);
    let pgw = pushgateway();
    let gateway = format!("http://{}", pgw.addr);
    let args = |interval| {
        [
            "--push-to",
            gateway.as_str(),
            "--push-job",
            "batch/nightly",
            "--push-label",
            "instance=pod 1",
            "--push-interval",
            interval,
        ]
    };
    let mut exp = Exporter::start(dir.path(), &args("0.3"));
    // The grouping key, escaped as push_to_gateway does, is on every pushed series.
    let series = "work_done_total{instance=\"pod 1\",job=\"batch/nightly\",worker=\"all\"}";
    let mut body = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            body = daemon_metrics(&pgw);
            sample_value(&body, series) == Some(6.0)
        }),
        "the Pushgateway does not hold the pushed series:\n{body}"
    );
    // New values are pushed on the interval.
    run_py("workers.py", &[d, "count", "1", "4"]);
    assert!(
        wait_until(Duration::from_secs(20), || {
            body = daemon_metrics(&pgw);
            sample_value(&body, series) == Some(10.0)
        }),
        "{body}"
    );
    let own = exp.scrape();
    assert!(
        sample_value(&own, "multiproc_exporter_pushes_total{result=\"ok\"}")
            .is_some_and(|n| n >= 2.0),
        "{own}"
    );
    // At SIGTERM the final values are pushed before the exporter exits; a long interval
    // makes sure it is the shutdown push that carries them.
    drop(exp);
    exp = Exporter::start(dir.path(), &args("3600"));
    assert!(wait_until(Duration::from_secs(20), || {
        sample_value(&daemon_metrics(&pgw), series) == Some(10.0)
    }));
    run_py("workers.py", &[d, "count", "1", "5"]);
    kill(Pid::from_raw(exp.child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
    assert!(
        wait_until(Duration::from_secs(20), || matches!(
            exp.child.try_wait(),
            Ok(Some(_))
        )),
        "the exporter did not exit after SIGTERM"
    );
    body = daemon_metrics(&pgw);
    assert_eq!(sample_value(&body, series), Some(15.0), "{body}");
}

#[test]
fn a_missing_pushgateway_is_counted_and_never_breaks_scrapes() {
    require_python();
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nothing listens on.
    let nowhere = format!("http://{}", free_addr());
    let exp = Exporter::start(
        dir.path(),
        &["--push-to", &nowhere, "--push-interval", "0.2"],
    );
    let mut text = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            text = exp.scrape();
            sample_value(&text, "multiproc_exporter_pushes_total{result=\"failed\"}")
                .is_some_and(|n| n >= 1.0)
        }),
        "{text}"
    );
    assert_eq!(
        sample_value(&text, "multiproc_exporter_pushes_total{result=\"ok\"}"),
        Some(0.0)
    );
}

#[test]
fn bad_push_options_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_refused(
        dir.path(),
        &[
            (
                vec!["--push-to", "https://pgw:9091"],
                "https is not supported",
            ),
            (
                vec!["--push-to", "pgw:9091", "--push-label", "nolabel"],
                "NAME=VALUE",
            ),
            (
                vec!["--push-to", "pgw:9091", "--push-label", "1x=y"],
                "not a usable label name",
            ),
            (
                vec!["--push-to", "pgw:9091", "--push-interval", "0"],
                "--push-interval",
            ),
            (
                vec!["--textfile", "/tmp/x.prom", "--textfile-interval", "nan"],
                "--textfile-interval",
            ),
        ],
    );
}
