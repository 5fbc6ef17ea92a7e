//! `--process-metrics`: ProcessCollector's metrics of real live writer processes, checked
//! against Python's own ProcessCollector reading the same `/proc`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

#[test]
fn process_metrics_of_live_writers_match_python_process_collector() {
    require_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut py = Command::new("python3")
        .arg(py_script("workers.py"))
        .args([dir.path().to_str().expect("utf-8"), "hold", "3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn workers");
    let mut out = BufReader::new(py.stdout.take().expect("stdout"));
    let pids: Vec<String> = (0..3)
        .map(|_| {
            let mut l = String::new();
            out.read_line(&mut l).expect("pid line");
            l.trim().to_string()
        })
        .collect();
    let exp = Exporter::start(dir.path(), &["--process-metrics"]);
    let text = exp.scrape();
    // The held workers are idle (blocked in read), so Python reads the same numbers.
    let args: Vec<&str> = pids.iter().map(String::as_str).collect();
    let expected = run_py("proc_oracle.py", &args);
    let mut checked = 0;
    for line in expected.lines() {
        let (series, value) = line.rsplit_once(' ').expect("oracle line");
        let want: f64 = value.parse().expect("number");
        let got = sample_value(&text, series)
            .unwrap_or_else(|| panic!("{series} missing from the scrape:\n{text}"));
        if series.starts_with("process_cpu_seconds_total") {
            assert!((got - want).abs() <= 0.02, "{series}: {got} vs {want}");
        } else {
            assert_eq!(got, want, "{series}");
        }
        checked += 1;
    }
    assert_eq!(checked, 6 * 3, "every metric of every writer:\n{expected}");
    assert!(
        text.contains("# TYPE process_cpu_seconds_total counter"),
        "{text}"
    );
    // A writer that exited is no longer reported.
    drop(py.stdin.take());
    assert!(py.wait().expect("wait").success());
    let mut after = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            after = exp.scrape();
            !after.contains("process_resident_memory_bytes{")
        }),
        "{after}"
    );
}

#[test]
fn without_the_flag_no_process_metrics() {
    require_python();
    let dir = tempfile::tempdir().expect("tempdir");
    run_py(
        "workers.py",
        &[dir.path().to_str().expect("utf-8"), "count", "1", "1"],
    );
    let exp = Exporter::start(dir.path(), &[]);
    assert!(!exp.scrape().contains("process_"));
}
