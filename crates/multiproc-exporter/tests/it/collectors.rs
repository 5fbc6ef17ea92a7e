//! `--collector`: custom Python collectors served with the multiprocess families, and
//! every way a collector can go wrong.

use std::path::Path;
use std::time::Duration;

use crate::helpers::*;

const OM: &str = "application/openmetrics-text; version=1.0.0";

fn scrape_om(exp: &Exporter) -> String {
    let (status, _, body) = get(exp.addr, "/metrics", &[("Accept", OM)]);
    assert_eq!(status, 200);
    String::from_utf8(body).expect("utf-8")
}

fn write(dir: &Path, name: &str, source: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, source).expect("write collector");
    p.to_str().expect("utf-8").to_string()
}

fn up(text: &str, collector: &str) -> Option<f64> {
    sample_value(
        text,
        &format!("multiproc_exporter_collector_up{{collector=\"{collector}\"}}"),
    )
}

/// Rows of the example's `Component` model (read by the test's stand-in Django).
const SLAAPP_ROWS: &str = r#"[{"name": "billing-db", "team": "payments", "window_start_hour": 1},
    {"name": "search", "team": "discovery", "window_start_hour": 3, "window_hours": 4}]"#;

/// The example's collector directory and the environment its stand-in Django needs.
fn django_example() -> (String, Vec<(&'static str, String)>) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/multiproc-django/collectors")
        .canonicalize()
        .expect("examples/multiproc-django");
    let fake = py_script("fake_django");
    (
        example.to_str().expect("utf-8").to_string(),
        vec![
            ("PYTHONPATH", fake.to_str().expect("utf-8").to_string()),
            ("SLAAPP_ROWS", SLAAPP_ROWS.to_string()),
        ],
    )
}

/// What Python itself serves for the example's collector, in `format`.
fn python_serves(collectors: &str, env: &[(&str, &str)], format: &str) -> String {
    let file = format!("{collectors}/components.py");
    run_py_env("oracle_collectors.py", &[format, &file], env)
}

#[test]
fn seed_002_component_collector_is_served_with_the_workers_metrics() {
    require_python();
    // gunicorn-style workers: several processes writing the directory.
    let dir = counted_dir(3, 5);
    // The Django example (seed 002's collector, no registration hooks), run unchanged
    // against a stand-in Django with two components in its "database".
    let (cols, env) = django_example();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let exp = Exporter::start_env(dir.path(), &["--collector", &cols], &env_refs);
    let env = env_refs;
    let text = exp.scrape();
    assert_eq!(up(&text, "components.py"), Some(1.0), "{text}");
    assert!(
        text.contains(
            "billing_db_service_window_in_window{component=\"billing-db\",team=\"payments\"} 1.0"
        ),
        "{text}"
    );
    // Python's own encoder for both halves is the oracle, in both formats.
    let expected = oracle(dir.path(), "text") + &python_serves(&cols, &env, "text");
    assert_same_exposition(&expected, &strip_own(&text));
    let om = scrape_om(&exp);
    let mp_om = oracle(dir.path(), "openmetrics");
    let expected_om = mp_om.strip_suffix("# EOF\n").expect("EOF").to_string()
        + &python_serves(&cols, &env, "openmetrics");
    assert_same_exposition(&expected_om, &strip_own(&om));
    assert!(om.ends_with("# EOF\n") && om.matches("# EOF").count() == 1);
    // Info and Enum (stateset) keep their types in OpenMetrics.
    assert!(om.contains("# TYPE slaapp_build info\n"), "{om}");
    assert!(
        om.contains("slaapp_maintenance{slaapp_maintenance=\"off\"} 1.0\n"),
        "{om}"
    );
    // The worker's own process, platform and gc collectors are not served.
    assert!(
        !text.contains("python_info") && !text.contains("python_gc_"),
        "{text}"
    );
}

#[test]
fn failing_collectors_are_left_out_and_the_rest_is_served() {
    require_python();
    let dir = counted_dir(1, 2);
    let cols = tempfile::tempdir().expect("tempdir");
    let c = cols.path();
    write(
        c,
        "good.py",
        "from prometheus_client.core import GaugeMetricFamily\n\
        def collect():\n    yield GaugeMetricFamily('good_value', 'fine', value=7)\n",
    );
    write(
        c,
        "raises.py",
        "def collect():\n    raise RuntimeError('database is down')\n",
    );
    write(
        c,
        "hangs.py",
        "import time\ndef collect():\n    time.sleep(3600)\n    yield from ()\n",
    );
    write(
        c,
        "prints.py",
        "import sys\nfrom prometheus_client.core import GaugeMetricFamily\n\
         def collect():\n    print('chatty collector')\n    sys.stdout.flush()\n\
         \x20   yield GaugeMetricFamily('prints_value', 'printed first', value=1)\n",
    );
    // Kills its interpreter on the first call only: the replaced worker then serves.
    let flag = c.join("died-once");
    write(
        c,
        "dies.py",
        &format!(
            "import os\nfrom prometheus_client.core import GaugeMetricFamily\n\
             def collect():\n    if not os.path.exists({flag:?}):\n        open({flag:?}, 'w').close()\n\
             \x20       os._exit(3)\n    yield GaugeMetricFamily('dies_value', 'back', value=2)\n"
        ),
    );
    write(
        c,
        "bad_name.py",
        "from prometheus_client.core import GaugeMetricFamily\n\
        def collect():\n    yield GaugeMetricFamily('ok_name', 'x', value=float('nan'))\n    \
        yield 'not a family'\n",
    );
    let exp = Exporter::start(
        dir.path(),
        &[
            "--collector",
            c.to_str().expect("utf-8"),
            "--collector-timeout",
            "3",
        ],
    );
    let text = exp.scrape();
    assert_eq!(up(&text, "good.py"), Some(1.0), "{text}");
    assert_eq!(sample_value(&text, "good_value"), Some(7.0));
    assert_eq!(up(&text, "raises.py"), Some(0.0));
    assert_eq!(up(&text, "hangs.py"), Some(0.0));
    assert_eq!(up(&text, "dies.py"), Some(0.0));
    assert_eq!(up(&text, "bad_name.py"), Some(0.0));
    assert!(
        !text.contains("ok_name"),
        "a failed collection serves nothing of it"
    );
    // What a collector prints goes to the log, never into the exposition.
    assert_eq!(up(&text, "prints.py"), Some(1.0), "{text}");
    assert_eq!(sample_value(&text, "prints_value"), Some(1.0));
    assert!(!text.contains("chatty"));
    // The multiprocess families are all there.
    assert_eq!(
        sample_value(&text, "work_done_total{worker=\"all\"}"),
        Some(2.0)
    );
    // The dead worker was replaced; the hung one too, and it still hangs.
    let mut later = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            later = exp.scrape();
            up(&later, "dies.py") == Some(1.0)
        }),
        "{later}"
    );
    assert_eq!(sample_value(&later, "dies_value"), Some(2.0));
    assert_eq!(up(&later, "hangs.py"), Some(0.0));
    assert_eq!(up(&later, "good.py"), Some(1.0));
    assert!(
        exposition::validate(
            &later,
            exposition::Format::Text(exposition::Escaping::Underscores)
        )
        .is_empty()
    );
    // Each failure is logged once with its traceback, not once per scrape.
    drop(exp.scrape());
    let log = stop_and_log(exp);
    assert_eq!(
        log.matches("RuntimeError: database is down").count(),
        2,
        "message and traceback, once:\n{log}"
    );
    assert!(log.contains("raises.py\", line 2"), "{log}");
    assert!(log.contains("chatty collector"), "{log}");
}

/// Stops the exporter and returns what it logged.
fn stop_and_log(mut exp: Exporter) -> String {
    use std::io::Read as _;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(exp.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = exp.child.wait();
    let mut log = String::new();
    if let Some(mut e) = exp.child.stderr.take() {
        let _ = e.read_to_string(&mut log);
    }
    log
}

#[test]
fn clashing_names_are_served_once_and_reported() {
    require_python();
    let dir = counted_dir(1, 2);
    let cols = tempfile::tempdir().expect("tempdir");
    let c = cols.path();
    // a_first.py's `shared` wins over b_second.py's; `work_done` is the directory's.
    write(
        c,
        "a_first.py",
        "from prometheus_client.core import GaugeMetricFamily, CounterMetricFamily\n\
        def collect():\n    yield GaugeMetricFamily('shared', 'first', value=1)\n    \
        yield CounterMetricFamily('work_done', 'clash with the directory', value=99)\n",
    );
    write(
        c,
        "b_second.py",
        "from prometheus_client.core import GaugeMetricFamily\n\
        def collect():\n    yield GaugeMetricFamily('shared', 'second', value=2)\n    \
        yield GaugeMetricFamily('multiproc_exporter_scrapes', 'ours', value=3)\n    \
        yield GaugeMetricFamily('b_only', 'fine', value=4)\n",
    );
    let exp = Exporter::start(dir.path(), &["--collector", c.to_str().expect("utf-8")]);
    let text = exp.scrape();
    assert_eq!(text.matches("# TYPE shared gauge").count(), 1, "{text}");
    assert_eq!(sample_value(&text, "shared"), Some(1.0));
    assert_eq!(
        sample_value(&text, "work_done_total{worker=\"all\"}"),
        Some(2.0)
    );
    assert_eq!(text.matches("# TYPE work_done_total").count(), 1);
    assert_eq!(sample_value(&text, "b_only"), Some(4.0));
    assert_eq!(text.matches("# TYPE multiproc_exporter_scrapes").count(), 1);
    let clashes = |n: &str| {
        sample_value(
            &text,
            &format!("multiproc_exporter_collector_clashes{{collector=\"{n}\"}}"),
        )
    };
    assert_eq!(clashes("a_first.py"), Some(1.0));
    assert_eq!(clashes("b_second.py"), Some(2.0));
    assert!(
        exposition::validate(
            &text,
            exposition::Format::Text(exposition::Escaping::Underscores)
        )
        .is_empty()
    );
    let log = stop_and_log(exp);
    assert!(log.contains("a_first.py: work_done"), "{log}");
}

const COUNTING: &str = "from prometheus_client.core import GaugeMetricFamily\n\
    import time\ncalls = 0\n\
    def collect():\n    global calls\n    calls += 1\n    time.sleep(SLEEP)\n    \
    yield GaugeMetricFamily('calls', 'collections so far', value=calls)\n    \
    yield GaugeMetricFamily('version', 'edit me', value=VERSION)\n";

fn counting(sleep: f64, version: u32) -> String {
    COUNTING
        .replace("SLEEP", &sleep.to_string())
        .replace("VERSION", &version.to_string())
}

#[test]
fn module_state_is_kept_results_cached_and_edits_picked_up() {
    require_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let cols = tempfile::tempdir().expect("tempdir");
    let file = write(cols.path(), "counting.py", &counting(0.0, 1));
    // Without a cache every scrape collects, in the same kept module.
    let exp = Exporter::start(dir.path(), &["--collector", &file]);
    let a = sample_value(&exp.scrape(), "calls").expect("calls");
    let b = sample_value(&exp.scrape(), "calls").expect("calls");
    assert_eq!(b, a + 1.0, "module state is kept between collections");
    // An edit is picked up without a restart (a new worker, a new module state).
    std::thread::sleep(Duration::from_millis(20));
    write(cols.path(), "counting.py", &counting(0.0, 2));
    let mut text = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            text = exp.scrape();
            sample_value(&text, "version") == Some(2.0)
        }),
        "{text}"
    );
    assert_eq!(sample_value(&text, "calls"), Some(1.0), "{text}");
    drop(exp);
    // With a cache, scrapes reuse one result.
    let exp = Exporter::start(
        dir.path(),
        &["--collector", &file, "--collector-cache-seconds", "3600"],
    );
    for _ in 0..3 {
        assert_eq!(sample_value(&exp.scrape(), "calls"), Some(1.0));
    }
}

#[test]
fn concurrent_scrapes_share_one_collection() {
    require_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let cols = tempfile::tempdir().expect("tempdir");
    let file = write(cols.path(), "slow.py", &counting(1.5, 1));
    let exp = Exporter::start(dir.path(), &["--collector", &file]);
    let addr = exp.addr;
    let values: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(move || {
                    let (_, _, body) = get(addr, "/metrics", &[]);
                    sample_value(&String::from_utf8_lossy(&body), "calls").expect("calls")
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    // Four scrapes sent together while one 1.5 s collection runs: at most two
    // collections (one may start just after the first ended), never four.
    let distinct: std::collections::BTreeSet<u64> = values.iter().map(|v| *v as u64).collect();
    assert!(
        distinct.len() <= 2 && *distinct.iter().max().expect("max") <= 2,
        "{values:?}"
    );
}

#[test]
fn bad_collector_options_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cols = tempfile::tempdir().expect("tempdir");
    let notpy = write(cols.path(), "notes.txt", "hello");
    let ok = write(cols.path(), "ok.py", "");
    assert_refused(
        dir.path(),
        &[
            (
                vec!["--collector", "/nonexistent/x.py"],
                "/nonexistent/x.py",
            ),
            (vec!["--collector", notpy.as_str()], "not a .py file"),
            (
                vec![
                    "--collector",
                    ok.as_str(),
                    "--python",
                    "/nonexistent/python3",
                ],
                "/nonexistent/python3",
            ),
            (
                vec!["--collector", ok.as_str(), "--collector-timeout", "0"],
                "--collector-timeout",
            ),
        ],
    );
}

#[test]
fn files_added_to_and_removed_from_a_collector_directory_are_noticed() {
    require_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let cols = tempfile::tempdir().expect("tempdir");
    let c = cols.path();
    write(c, "first.py", &counting(0.0, 1));
    let exp = Exporter::start(dir.path(), &["--collector", c.to_str().expect("utf-8")]);
    assert_eq!(up(&exp.scrape(), "first.py"), Some(1.0));
    write(
        c,
        "second.py",
        "from prometheus_client.core import GaugeMetricFamily\n\
         def collect():\n    yield GaugeMetricFamily('second_value', 'added later', value=5)\n",
    );
    // Not collectors: a helper and a non-Python file.
    write(
        c,
        "_helper.py",
        "raise SystemExit('never imported as a collector')\n",
    );
    write(c, "notes.txt", "not a collector\n");
    let text = exp.scrape();
    assert_eq!(up(&text, "second.py"), Some(1.0), "{text}");
    assert_eq!(sample_value(&text, "second_value"), Some(5.0));
    assert!(!text.contains("_helper.py") && !text.contains("notes.txt"));
    std::fs::remove_file(c.join("first.py")).expect("remove");
    let text = exp.scrape();
    assert_eq!(up(&text, "first.py"), None, "{text}");
    assert!(!text.contains("# TYPE calls gauge"));
    assert_eq!(up(&text, "second.py"), Some(1.0));
}
