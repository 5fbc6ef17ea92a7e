//! `--textfile`: the merged scrape written atomically, served by a real node_exporter's
//! textfile collector.

use std::time::Duration;

use crate::daemons::*;
use crate::helpers::*;

#[test]
fn node_exporter_serves_the_textfile() {
    require_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let textdir = tempfile::tempdir().expect("tempdir");
    run_py(
        "workers.py",
        &[dir.path().to_str().expect("utf-8"), "count", "2", "7"],
    );
    let prom = textdir.path().join("app.prom");
    let exp = Exporter::start(
        dir.path(),
        &[
            "--textfile",
            prom.to_str().expect("utf-8"),
            "--textfile-interval",
            "0.2",
        ],
    );
    let node = start_daemon(
        "prometheus-node-exporter",
        "prometheus-node-exporter",
        &[
            "--collector.disable-defaults",
            "--collector.textfile",
            &format!(
                "--collector.textfile.directory={}",
                textdir.path().display()
            ),
        ],
    );
    let mut body = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            body = daemon_metrics(&node);
            sample_value(&body, "work_done_total{worker=\"all\"}") == Some(14.0)
        }),
        "node_exporter does not serve the textfile's series:\n{body}"
    );
    // node_exporter read it without complaint, and only the one file.
    assert_eq!(
        sample_value(&body, "node_textfile_scrape_error"),
        Some(0.0),
        "{body}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(textdir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("app.prom")]);
    // The file is the scrape (own counters aside), and it follows the directory.
    let file = std::fs::read_to_string(&prom).expect("read textfile");
    assert_same_exposition(&oracle(dir.path(), "text"), &strip_own(&file));
    run_py(
        "workers.py",
        &[dir.path().to_str().expect("utf-8"), "count", "1", "5"],
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            body = daemon_metrics(&node);
            sample_value(&body, "work_done_total{worker=\"all\"}") == Some(19.0)
        }),
        "the textfile was not rewritten:\n{body}"
    );
    let own = exp.scrape();
    assert!(
        sample_value(
            &own,
            "multiproc_exporter_textfile_writes_total{result=\"ok\"}"
        )
        .is_some_and(|n| n >= 2.0),
        "{own}"
    );
}

#[test]
fn an_unwritable_textfile_is_counted_and_never_breaks_scrapes() {
    require_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let exp = Exporter::start(
        dir.path(),
        &[
            "--textfile",
            "/nonexistent-dir/app.prom",
            "--textfile-interval",
            "0.1",
        ],
    );
    let mut text = String::new();
    assert!(wait_until(Duration::from_secs(20), || {
        text = exp.scrape();
        sample_value(
            &text,
            "multiproc_exporter_textfile_writes_total{result=\"failed\"}",
        )
        .is_some_and(|n| n >= 2.0)
    }));
    assert_eq!(
        sample_value(
            &text,
            "multiproc_exporter_textfile_writes_total{result=\"ok\"}"
        ),
        Some(0.0)
    );
}
