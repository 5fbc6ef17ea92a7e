//! `serve --exporters DIR` through the real binary, real `python3` and real
//! prometheus_client: `P/metrics/<sub>` merged and validated, `httpsd_exporter_up`,
//! `P/exporters`, format negotiation and gzip, deadlines from Prometheus's header,
//! caching, kept module state, and misbehaving exporters isolated.

use std::time::Duration;

use crate::helpers::{
    PROMETHEUS_ACCEPT, Server, Tree, get, get_with, raw_get, require_python, wait_for,
};

/// A `collect(**params)` exporter (seed 003's Jenkins pattern, with the API stubbed).
pub const JOBS_PY: &str = r#"
from prometheus_client.core import GaugeMetricFamily

def collect(**params):
    g = GaugeMetricFamily("jenkins_jobs", "Jobs by state", labels=["state"])
    g.add_metric(["ok"], 3)
    g.add_metric(["failed"], float(params.get("failed", "1")))
    yield g
"#;

/// A module registering metrics on REGISTRY at import, with state kept across scrapes.
pub const KEPT_PY: &str = r#"
import os
from prometheus_client import Counter, Gauge

SCRAPES = Counter("probe_scrapes", "Scrapes seen by this module")
PID = Gauge("probe_worker_pid", "The worker holding this module")
PID.set(os.getpid())
PID.set_function(lambda: (SCRAPES.inc(), os.getpid())[1])
"#;

/// A node_exporter textfile.
pub const BACKUP_PROM: &str = "# HELP backup_last_success_seconds Last good backup.\n# TYPE backup_last_success_seconds gauge\nbackup_last_success_seconds 1700000000\n";

/// An executable exporter that reads a parameter.
pub const PROBE_SH: &str = "#!/bin/sh\necho '# TYPE probe_ok gauge'\necho \"probe_ok{target=\\\"${HTTPSD_PARAM_TARGET:-none}\\\"} 1\"\n";

/// The value of the sample `series` (exact text before the value) in `body`.
pub fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The series of httpsd's own family `family` for the exporter file `file`: labelled
/// with its exporter path (the file without its extension, the `exporter` label of its
/// `P/exporters` target) and the file.
pub fn own_series(family: &str, file: &str) -> String {
    let path = exporter_path(file);
    format!("{family}{{exporter=\"{path}\",file=\"{file}\"}}")
}

/// The exporter path of a test file (all of them have an extension, no dotted directory).
pub fn exporter_path(file: &str) -> &str {
    file.rsplit_once('.').map_or(file, |(stem, _)| stem)
}

/// `httpsd_exporter_up` of the exporter file `file` in `body`.
pub fn up(body: &str, file: &str) -> Option<f64> {
    value(body, &own_series("httpsd_exporter_up", file))
}

/// A tree with the four exporters of the module doc and a server over it.
fn serve_exporters(extra: &[&str]) -> (Tree, Tree, Server) {
    require_python();
    let targets = Tree::new();
    let ex = Tree::new();
    ex.write("jobs.py", JOBS_PY);
    ex.write("team/kept.py", KEPT_PY);
    ex.write("backup.prom", BACKUP_PROM);
    ex.write_exec("team/probe.sh", PROBE_SH);
    ex.write("README.md", "not an exporter\n");
    ex.write(
        "_helper.py",
        "raise SystemExit('ignored: never imported')\n",
    );
    let dir = ex.root().display().to_string();
    let mut args = vec!["--exporters", dir.as_str()];
    args.extend_from_slice(extra);
    let server = Server::serve(targets.root(), &args);
    (targets, ex, server)
}

/// Step 1 end to end: every kind served, merged at the root and per path, with up
/// and duration per exporter; `P/metrics` alone stays httpsd's own.
#[tokio::test]
async fn every_kind_is_served_and_merged() {
    let (_t, ex, server) = serve_exporters(&[]);
    let all = get(&server.url("/metrics/")).await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(
        all.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        all.content_type
    );
    let b = &all.body;
    assert_eq!(value(b, "jenkins_jobs{state=\"ok\"}"), Some(3.0), "{b}");
    assert_eq!(value(b, "backup_last_success_seconds"), Some(1.7e9), "{b}");
    assert_eq!(value(b, "probe_ok{target=\"none\"}"), Some(1.0), "{b}");
    assert!(value(b, "probe_scrapes_total").is_some(), "{b}");
    for e in ["jobs.py", "team/kept.py", "backup.prom", "team/probe.sh"] {
        assert_eq!(up(b, e), Some(1.0), "{e} up: {b}");
        assert!(
            value(b, &own_series("httpsd_exporter_duration_seconds", e)).is_some(),
            "{b}"
        );
    }
    // A file's path without its extension; a directory; parameters as for generators.
    let one = get(&server.url("/metrics/jobs?failed=7")).await;
    assert_eq!(one.status, 200);
    assert_eq!(
        value(&one.body, "jenkins_jobs{state=\"failed\"}"),
        Some(7.0),
        "{}",
        one.body
    );
    assert!(!one.body.contains("backup_last"), "{}", one.body);
    let team = get(&server.url("/metrics/team?target=db1")).await;
    assert_eq!(
        value(&team.body, "probe_ok{target=\"db1\"}"),
        Some(1.0),
        "{}",
        team.body
    );
    assert!(!team.body.contains("jenkins_jobs"), "{}", team.body);
    // A `.prom` file rewritten (atomically, as cron jobs do) is read again, although
    // results are cached for 60 s: a new file version is a new cache key.
    let tmp = ex.root().join("_backup.tmp");
    std::fs::write(&tmp, BACKUP_PROM.replace("1700000000", "1800000000")).unwrap();
    std::fs::rename(&tmp, ex.root().join("backup.prom")).unwrap();
    wait_for(Duration::from_secs(30), "the new .prom content", || async {
        let r = get(&server.url("/metrics/backup")).await;
        (value(&r.body, "backup_last_success_seconds") == Some(1.8e9)).then_some(())
    })
    .await;
    // httpsd's own metrics are untouched.
    let own = get(&server.url("/metrics")).await;
    assert!(
        own.body.contains("httpsd") || own.body.contains("process_"),
        "{}",
        own.body
    );
    assert!(!own.body.contains("jenkins_jobs"));
    // Unknown paths 404, unsafe ones 400, ignored files do not exist.
    assert_eq!(get(&server.url("/metrics/nope")).await.status, 404);
    assert_eq!(get(&server.url("/metrics/_helper")).await.status, 404);
    assert_eq!(get(&server.url("/metrics/README")).await.status, 404);
    assert_eq!(raw_get(&server.base, "/metrics/a%2fb").0, 400);
    assert_eq!(raw_get(&server.base, "/metrics/../etc").0, 400);
}

/// `P/exporters`: one group per exporter path, the target being the request's Host
/// or `--advertise`, with `__metrics_path__` and `exporter`.
#[tokio::test]
async fn the_exporters_are_an_http_sd_list() {
    let (_t, ex, server) = serve_exporters(&["--url-prefix", "/sd"]);
    let r = get(&server.url("/sd/exporters")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type, "application/json");
    let list = r.json();
    let groups = list.as_array().unwrap();
    let paths: Vec<&str> = groups
        .iter()
        .map(|g| g["labels"]["exporter"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["backup", "jobs", "team/kept", "team/probe"],
        "{list}"
    );
    for g in groups {
        assert_eq!(g["targets"], serde_json::json!([server.addr]));
        let path = g["labels"]["__metrics_path__"].as_str().unwrap();
        assert_eq!(
            path,
            format!("/sd/metrics/{}", g["labels"]["exporter"].as_str().unwrap())
        );
        assert_eq!(get(&server.url(path)).await.status, 200);
    }
    // Parameters: one group per set.
    ex.write(
        "_params.json",
        r#"{"team/probe": [{"target": "a"}, {"target": "b"}]}"#,
    );
    let list = get(&server.url("/sd/exporters")).await.json();
    let probes: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["labels"]["exporter"] == "team/probe")
        .collect();
    assert_eq!(probes.len(), 2, "{list}");
    assert_eq!(probes[0]["labels"]["__param_target"], "a");
    assert_eq!(probes[1]["labels"]["exporter_params"], "target=b");
    ex.write("_params.json", "{broken");
    let r = get(&server.url("/sd/exporters")).await;
    assert_eq!(r.status, 500, "never a partial list: {}", r.body);
    assert!(r.body.contains("_params.json"), "{}", r.body);
    // --advertise wins over the Host header.
    let dir = ex.root().display().to_string();
    let t = Tree::new();
    let other = Server::serve(
        t.root(),
        &["--exporters", &dir, "--advertise", "metrics.example:9000"],
    );
    std::fs::remove_file(ex.root().join("_params.json")).unwrap();
    let list = get(&other.url("/exporters")).await.json();
    assert_eq!(
        list[0]["targets"],
        serde_json::json!(["metrics.example:9000"])
    );
    assert_eq!(list[0]["labels"]["__metrics_path__"], "/metrics/backup");
}

/// OpenMetrics when the scraper asks for it (Prometheus's Accept), gzip when accepted.
#[tokio::test]
async fn openmetrics_and_gzip_are_negotiated() {
    let (_t, _ex, server) = serve_exporters(&[]);
    let om = get_with(&server.url("/metrics/"), &[("Accept", PROMETHEUS_ACCEPT)]).await;
    assert!(
        om.content_type.starts_with("application/openmetrics-text"),
        "{}",
        om.content_type
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(om.body.contains("probe_scrapes_total"), "{}", om.body);
    exposition::parse(
        &om.body,
        exposition::Format::OpenMetrics(exposition::Escaping::Underscores),
    )
    .expect("valid OpenMetrics");
    let r = crate::helpers::client()
        .get(server.url("/metrics/jobs"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let bytes = r.bytes().await.unwrap();
    assert!(exposition::is_gzip(&bytes));
}

/// A scrape answered from the cache reuses the merged body, yet a changed `.prom`
/// file, an exporter turning invalid (and valid again) and every new run (caching
/// off) show at the next scrapes.
#[tokio::test]
async fn a_kept_body_follows_changes_failures_and_new_runs() {
    let targets = Tree::new();
    let ex = Tree::new();
    ex.write("b.prom", "# TYPE b_value gauge\nb_value 1\n");
    ex.write_exec(
        "count.sh",
        "#!/bin/sh\nn=$(cat _n 2>/dev/null || echo 0); n=$((n+1)); echo $n > _n\n\
         echo '# TYPE count_runs gauge'; echo \"count_runs $n\"\n",
    );
    let dir = ex.root().display().to_string();
    let server = Server::serve(targets.root(), &["--exporters", &dir]);
    let first = eventually_up(&server, "/metrics/b", "b.prom").await;
    let second = get(&server.url("/metrics/b")).await.body;
    let fixed = |body: &str| -> String {
        let series = own_series("httpsd_exporter_duration_seconds", "b.prom");
        (body.lines()).filter(|l| !l.starts_with(&series)).collect()
    };
    assert_eq!(fixed(&first), fixed(&second));
    assert_eq!(value(&second, "b_value"), Some(1.0), "{second}");
    let wait_value = |want: Option<f64>, up_want: f64| {
        let server = &server;
        async move {
            wait_for(
                Duration::from_secs(30),
                "the change to be served",
                || async {
                    let b = get(&server.url("/metrics/b")).await.body;
                    (value(&b, "b_value") == want && up(&b, "b.prom") == Some(up_want))
                        .then_some(())
                },
            )
            .await
        }
    };
    ex.write("b.prom", "# TYPE b_value gauge\nb_value 2\n");
    wait_value(Some(2.0), 1.0).await;
    ex.write("b.prom", "# TYPE b_value gauge\nb_value{ 3\n");
    wait_value(None, 0.0).await;
    ex.write("b.prom", "# TYPE b_value gauge\nb_value 4\n");
    wait_value(Some(4.0), 1.0).await;
    drop(server);

    let server = Server::serve(
        targets.root(),
        &["--exporters", &dir, "--cache-type", "None"],
    );
    let mut last = 0.0;
    for _ in 0..3 {
        let b = get(&server.url("/metrics/count")).await.body;
        let n = value(&b, "count_runs").unwrap_or_else(|| panic!("count_runs in {b}"));
        assert!(n > last, "run {n} after {last}: {b}");
        last = n;
    }
}

/// Polls `path` until `exporter` is up; returns the body.
pub async fn eventually_up(server: &Server, path: &str, exporter: &str) -> String {
    wait_for(Duration::from_secs(30), "the exporter to be up", || async {
        let r = get(&server.url(path)).await;
        (up(&r.body, exporter) == Some(1.0)).then_some(r.body)
    })
    .await
}

/// `httpsd check --exporters DIR`: every exporter run once, every problem of its
/// output listed with its line, conflicts of one path reported; exit 1 on failure.
#[tokio::test]
async fn check_validates_exporters() {
    require_python();
    let t = Tree::new();
    t.write("static.json", r#"[{"targets": ["a:1"]}]"#);
    let ex = Tree::new();
    ex.write("ok.prom", BACKUP_PROM);
    ex.write("jobs.py", JOBS_PY);
    ex.write("bad.prom", "# TYPE 1x gauge\nok_metric 1\nok_metric 2\n");
    ex.write("two/a.prom", "# TYPE shared gauge\nshared 1\n");
    ex.write_exec("two/a.sh", "#!/bin/sh\necho 'shared 2'\n");
    let run = |format: &str| {
        std::process::Command::new(crate::helpers::bin())
            .args(["check", &t.root().display().to_string(), "--exporters"])
            .arg(ex.root())
            .args(["--format", format])
            .output()
            .expect("run check")
    };
    let out = run("text");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("PASS exporter ok.prom (1 series)"), "{text}");
    assert!(text.contains("PASS exporter jobs.py (2 series)"), "{text}");
    assert!(text.contains("FAIL exporter bad.prom"), "{text}");
    assert!(
        text.contains("bad.prom: line 1: invalid metric name"),
        "{text}"
    );
    assert!(
        text.contains("bad.prom: line 3: duplicate series"),
        "every problem: {text}"
    );
    assert!(text.contains("PASS exporter two/a.prom"), "{text}");
    assert!(
        text.contains("shared is already defined by exporter two/a.prom"),
        "{text}"
    );
    assert!(
        text.contains("exporters: 3 passed, 2 failed: FAILED"),
        "{text}"
    );
    let out = run("json");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["ok"], false);
    assert_eq!(
        doc["exporters"]["exporters"].as_array().unwrap().len(),
        5,
        "{doc}"
    );
    // A valid directory passes.
    std::fs::remove_file(ex.root().join("bad.prom")).unwrap();
    std::fs::remove_file(ex.root().join("two/a.sh")).unwrap();
    let out = run("text");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
