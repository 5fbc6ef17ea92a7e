//! Python processes write while the exporter scrapes in a loop: every scrape parses,
//! counters never go backwards, and the final value is exact.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::*;

#[test]
fn scrapes_during_concurrent_writes_are_monotonic_and_exact() {
    require_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let exp = Exporter::start(dir.path(), &[]);
    let (workers, incs) = (4, 4000);
    let mut py = Command::new("python3")
        .arg(py_script("workers.py"))
        .args([
            dir.path().to_str().expect("utf-8"),
            "count",
            &workers.to_string(),
            &incs.to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn workers");
    let (mut last_c, mut last_h, mut scrapes) = (0.0f64, 0.0f64, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = py.try_wait().expect("wait").is_some();
        let text = exp.scrape();
        scrapes += 1;
        assert_eq!(
            sample_value(&text, "multiproc_exporter_corrupt_files"),
            Some(0.0),
            "{text}"
        );
        let c = sample_value(&text, "work_done_total{worker=\"all\"}").unwrap_or(0.0);
        let h = sample_value(&text, "work_seconds_count").unwrap_or(0.0);
        assert!(c >= last_c, "counter went backwards: {last_c} -> {c}");
        assert!(
            h >= last_h,
            "histogram count went backwards: {last_h} -> {h}"
        );
        (last_c, last_h) = (c, h);
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "workers did not finish");
    }
    assert!(py.wait().expect("wait").success());
    let expected = (workers * incs) as f64;
    assert_eq!(last_c, expected);
    assert_eq!(last_h, expected);
    assert!(scrapes > 1, "the loop should have scraped while writing");
    assert_same_exposition(&oracle(dir.path(), "text"), &strip_own(&exp.scrape()));
}
