//! Exporters that misbehave, through the real binary: invalid output of every class,
//! two exporters of one path defining one family, hung, crashing, `os._exit`-ing,
//! garbage-printing and slow exporters (each `up 0` alone, everything else served),
//! the scrape deadline from Prometheus's header, caching (N concurrent scrapes = one
//! run) and a kept module's state (one worker, consistent under concurrent scrapes).

use std::collections::HashSet;
use std::time::Duration;

use crate::exporters::{BACKUP_PROM, JOBS_PY, KEPT_PY, eventually_up, up, value};
use crate::helpers::{Server, Tree, get, get_with, require_python};

/// Each validation class makes its exporter `up 0` with the parser's line and reason
/// in `?debug=true` and the log, while the valid exporters of the path are served.
#[tokio::test]
async fn invalid_output_is_never_passed_on() {
    let t = Tree::new();
    let ex = Tree::new();
    ex.write("ok.prom", BACKUP_PROM);
    ex.write("bad/name.prom", "# TYPE 1bad gauge\n1bad 1\n");
    ex.write("bad/outside.prom", "# TYPE g gauge\ng_bucket{le=\"1\"} 1\n");
    ex.write("bad/types.prom", "# TYPE t gauge\n# TYPE t counter\nt 1\n");
    ex.write(
        "bad/dup.prom",
        "# TYPE d gauge\nd{a=\"1\"} 1\nd{a=\"1\"} 2\n",
    );
    ex.write("bad/garbage.prom", "hello world, not metrics\n");
    // Two exporters of one path define one family: the later one is left out.
    ex.write("two/x.prom", "# TYPE shared gauge\nshared 1\n");
    ex.write("two/x.py", "from prometheus_client.core import GaugeMetricFamily\ndef collect():\n    yield GaugeMetricFamily('shared', 'again', value=2)\n");
    require_python();
    let dir = ex.root().display().to_string();
    let server = Server::serve(t.root(), &["--exporters", &dir]);
    let r = get(&server.url("/metrics/")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up(&r.body, "ok.prom"), Some(1.0), "{}", r.body);
    assert_eq!(value(&r.body, "backup_last_success_seconds"), Some(1.7e9));
    let cases = [
        ("bad/name.prom", "line 1: invalid metric name"),
        (
            "bad/outside.prom",
            "line 2: sample g_bucket is outside its family",
        ),
        ("bad/types.prom", "line 2: second TYPE line for t"),
        ("bad/dup.prom", "line 3: duplicate series"),
        ("bad/garbage.prom", "line 1: "),
    ];
    for (exporter, _) in cases {
        assert_eq!(up(&r.body, exporter), Some(0.0), "{exporter}: {}", r.body);
    }
    for name in ["1bad", "g_bucket", "t 1", "d{a", "hello"] {
        assert!(!r.body.contains(name), "{name} leaked: {}", r.body);
    }
    let debug = get(&server.url("/metrics/bad?debug=true")).await.json();
    for (exporter, reason) in cases {
        let e = (debug["exporters"].as_array().unwrap().iter())
            .find(|e| e["file"] == exporter)
            .unwrap_or_else(|| panic!("{exporter} in {debug}"));
        let msg = e["error"].as_str().unwrap_or("");
        assert!(msg.contains(reason), "{exporter}: {msg}");
        assert_eq!(e["up"], false);
    }
    let two = get(&server.url("/metrics/two/x")).await;
    assert_eq!(value(&two.body, "shared"), Some(1.0), "{}", two.body);
    assert_eq!(up(&two.body, "two/x.prom"), Some(1.0));
    assert_eq!(up(&two.body, "two/x.py"), Some(0.0), "{}", two.body);
    let debug = get(&server.url("/metrics/two?debug=true")).await.json();
    assert!(
        debug
            .to_string()
            .contains("shared is already defined by exporter two/x.prom"),
        "{debug}"
    );
    assert!(
        server
            .log_text()
            .contains("invalid exposition output: line 1"),
        "the log names the line"
    );
}

/// Hung, crashing, `os._exit`-ing, garbage-printing and slow exporters fail alone;
/// the others and httpsd's own endpoints keep serving; the scrape deadline comes
/// from `X-Prometheus-Scrape-Timeout-Seconds` less a margin.
#[tokio::test]
async fn misbehaving_exporters_are_isolated() {
    require_python();
    let t = Tree::new();
    t.write("static.json", r#"[{"targets": ["a:1"]}]"#);
    let ex = Tree::new();
    ex.write("good.py", JOBS_PY);
    ex.write(
        "hung.py",
        "import time\ndef collect():\n    time.sleep(3600)\n    return []\n",
    );
    ex.write(
        "crash.py",
        "def collect():\n    raise RuntimeError('the API is down')\n",
    );
    ex.write("exits.py", "import os\ndef collect():\n    os._exit(3)\n");
    ex.write(
        "garbage.py",
        "def collect():\n    return ['not a metric']\n",
    );
    ex.write_exec("garbage.sh", "#!/bin/sh\necho 'random text {'\n");
    ex.write_exec("fails.sh", "#!/bin/sh\necho oops >&2\nexit 2\n");
    ex.write_exec("slow.sh", "#!/bin/sh\nsleep 30\necho 'slow 1'\n");
    let dir = ex.root().display().to_string();
    let server = Server::serve(
        t.root(),
        &[
            "--exporters",
            &dir,
            "--max-run-time",
            "20",
            "--cache-type",
            "None",
        ],
    );
    // Warm: the good module's worker has started and imported prometheus_client.
    eventually_up(&server, "/metrics/good", "good.py").await;
    let started = std::time::Instant::now();
    let r = get_with(
        &server.url("/metrics/"),
        &[("X-Prometheus-Scrape-Timeout-Seconds", "2")],
    )
    .await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up(&r.body, "good.py"), Some(1.0), "{}", r.body);
    assert_eq!(value(&r.body, "jenkins_jobs{state=\"ok\"}"), Some(3.0));
    for bad in [
        "hung.py",
        "crash.py",
        "exits.py",
        "garbage.py",
        "garbage.sh",
        "fails.sh",
        "slow.sh",
    ] {
        assert_eq!(up(&r.body, bad), Some(0.0), "{bad}: {}", r.body);
    }
    // The answer came from the deadline (2 s less the margin), not from the 20 s limit.
    assert!(took < Duration::from_secs(15), "answered after {took:?}");
    let debug = get_with(
        &server.url("/metrics/?debug=true"),
        &[("X-Prometheus-Scrape-Timeout-Seconds", "2")],
    )
    .await
    .json();
    let text = debug.to_string();
    assert!(text.contains("the API is down"), "{text}");
    assert!(
        text.contains("the scrape's timeout less a margin"),
        "{text}"
    );
    // Everything else is still served.
    assert_eq!(get(&server.url("/targets")).await.status, 200);
    assert_eq!(get(&server.url("/metrics")).await.status, 200);
    eventually_up(&server, "/metrics/good", "good.py").await;
    // A worker that exited is replaced: the module works again once fixed.
    ex.write("exits.py", "from prometheus_client.core import GaugeMetricFamily\ndef collect():\n    yield GaugeMetricFamily('back', 'again', value=1)\n");
    eventually_up(&server, "/metrics/exits", "exits.py").await;
}

/// Ten concurrent scrapes of an uncached path cost one run (single flight), and with
/// caching, later scrapes within `cache_time` cost none.
#[tokio::test]
async fn concurrent_scrapes_share_one_run() {
    let t = Tree::new();
    let ex = Tree::new();
    let runs = ex.root().join("runs.log");
    ex.write_exec(
        "count.sh",
        &format!(
            "#!/bin/sh\necho run >> '{}'\nsleep 1\necho 'counted 1'\n",
            runs.display()
        ),
    );
    let dir = ex.root().display().to_string();
    let server = Server::serve(t.root(), &["--exporters", &dir]);
    let url = server.url("/metrics/count");
    let scrapes = (0..10).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { get(&url).await })
    });
    for s in scrapes {
        let r = s.await.unwrap();
        assert_eq!(up(&r.body, "count.sh"), Some(1.0), "{}", r.body);
    }
    for _ in 0..5 {
        assert_eq!(value(&get(&url).await.body, "counted"), Some(1.0));
    }
    let lines = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(
        lines.lines().count(),
        1,
        "one run for 15 scrapes: {lines:?}"
    );
}

/// A kept module's state accumulates across scrapes, on exactly one worker: twenty
/// concurrent scrapes (distinct parameters, so none shares a run) see twenty distinct
/// counts and one pid.
#[tokio::test]
async fn kept_state_is_never_split() {
    require_python();
    let t = Tree::new();
    let ex = Tree::new();
    ex.write("kept.py", KEPT_PY);
    let dir = ex.root().display().to_string();
    let server = Server::serve(
        t.root(),
        &[
            "--exporters",
            &dir,
            "--cache-type",
            "None",
            "--python-workers",
            "4",
        ],
    );
    let first = eventually_up(&server, "/metrics/kept", "kept.py").await;
    let second = get(&server.url("/metrics/kept")).await.body;
    let (a, b) = (
        value(&first, "probe_scrapes_total").unwrap(),
        value(&second, "probe_scrapes_total").unwrap(),
    );
    assert_eq!(b, a + 1.0, "state accumulates: {first}\n{second}");
    let scrapes = (0..20).map(|i| {
        let url = server.url(&format!("/metrics/kept?n={i}"));
        tokio::spawn(async move { get(&url).await.body })
    });
    let mut counts = HashSet::new();
    let mut pids = HashSet::new();
    for s in scrapes {
        let body = s.await.unwrap();
        counts.insert(value(&body, "probe_scrapes_total").unwrap() as i64);
        pids.insert(value(&body, "probe_worker_pid").unwrap() as i64);
    }
    assert_eq!(
        counts.len(),
        20,
        "every scrape saw its own step of one state: {counts:?}"
    );
    assert_eq!(pids.len(), 1, "one worker holds the module: {pids:?}");
}
