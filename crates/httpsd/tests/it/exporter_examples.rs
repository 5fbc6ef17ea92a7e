//! The bundled examples/exporters/ directory, served unchanged by the real binary with
//! real python3 and prometheus_client: every example's series with
//! `httpsd_exporter_up 1`, the http_sd list, and the health exporter's Enum and
//! Histogram accumulating across scrapes against the stand-in API over HTTP.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use exposition::{Escaping, Format, MetricFamily};

use crate::helpers::{Server, get, require_python, wait_for};

/// The example directory of the repository (read only: the tests never write there).
fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/exporters")
}

/// `httpsd serve examples/exporters/targets --exporters examples/exporters/exporters`
/// with caching off (every scrape runs the exporters) and `env`.
fn serve_examples(env: &[(&str, &str)]) -> Server {
    let dir = examples();
    let args: Vec<String> = vec![
        "serve".into(),
        dir.join("targets").display().to_string(),
        "--exporters".into(),
        dir.join("exporters").display().to_string(),
        "-p".into(),
        "0".into(),
        "--cache-type".into(),
        "None".into(),
    ];
    // Unset (or empty) JENKINS_URL/HITL_URL: the examples read their stand-in files.
    let mut all = vec![("JENKINS_URL", ""), ("HITL_URL", "")];
    all.extend_from_slice(env);
    Server::start_with_env(&args, &all)
}

/// The stand-in Jenkins/health API (`_standin/api.py --port 0`), killed on drop.
struct StandIn {
    child: Child,
    base: String,
}

impl StandIn {
    fn start() -> StandIn {
        let script = examples().join("exporters/_standin/api.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the stand-in API");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the stand-in's first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line of {}: {line:?}", script.display()))
            .to_string();
        StandIn {
            child,
            base: format!("http://{addr}"),
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

/// GET an exporter path: 200 and its families parsed (text format 0.0.4).
async fn scrape(server: &Server, path: &str) -> Vec<MetricFamily> {
    let r = get(&server.url(path)).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    exposition::parse(&r.body, Format::Text(Escaping::Underscores))
        .unwrap_or_else(|e| panic!("GET {path} is not valid exposition text ({e}):\n{}", r.body))
}

/// The value of the sample `name` whose labels include every pair of `labels`.
fn value(fams: &[MetricFamily], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    fams.iter()
        .flat_map(|f| &f.samples)
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
}

fn up(fams: &[MetricFamily], exporter: &str) -> Option<f64> {
    let path = crate::exporters::exporter_path(exporter);
    value(
        fams,
        "httpsd_exporter_up",
        &[("exporter", path), ("file", exporter)],
    )
}

/// Every example, as is (no network at all: the API exporters read their stand-in
/// documents), is up with its series; `/metrics/system` merges the two system exporters;
/// the shell script takes its parameter; `/exporters` lists all five.
#[tokio::test]
async fn every_example_is_served_up_with_its_series() {
    require_python();
    let server = serve_examples(&[]);

    let ci = scrape(&server, "/metrics/ci/jenkins_jobs").await;
    assert_eq!(up(&ci, "ci/jenkins_jobs.py"), Some(1.0));
    assert_eq!(value(&ci, "jenkins_jobs_count", &[]), Some(4.0));
    assert_eq!(
        value(&ci, "jenkins_jobs_by_color", &[("color", "blue")]),
        Some(2.0)
    );
    assert!(
        value(
            &ci,
            "httpsd_exporter_duration_seconds",
            &[
                ("exporter", "ci/jenkins_jobs"),
                ("file", "ci/jenkins_jobs.py")
            ]
        )
        .is_some()
    );

    let health = scrape(&server, "/metrics/health/hitl").await;
    assert_eq!(up(&health, "health/hitl.py"), Some(1.0));
    let state = |f: &[MetricFamily], s: &str| {
        value(
            f,
            "hitl_psql_health_status",
            &[("hitl_psql_health_status", s)],
        )
    };
    assert_eq!(state(&health, "healthy"), Some(1.0));
    assert_eq!(state(&health, "unhealthy"), Some(0.0));

    let system = scrape(&server, "/metrics/system").await;
    assert_eq!(up(&system, "system/proc.py"), Some(1.0));
    assert_eq!(up(&system, "system/disk.sh"), Some(1.0));
    let memory =
        value(&system, "system_usage", &[("resource_type", "Memory")]).expect("memory usage");
    assert!(memory > 0.0 && memory <= 100.0, "memory usage {memory}");
    assert!(
        value(&system, "system_cpu_seconds_total", &[("mode", "idle")]).expect("idle seconds")
            > 0.0
    );
    assert!(
        value(&system, "system_memory_bytes", &[("state", "total")]).expect("total memory") > 0.0
    );
    assert!(value(&system, "disk_size_bytes", &[("mount", "/")]).expect("size of /") > 0.0);

    // The shell script's parameter: ?mount= arrives as $HTTPSD_PARAM_MOUNT.
    let proc_fs = scrape(&server, "/metrics/system/disk?mount=/proc").await;
    assert_eq!(up(&proc_fs, "system/disk.sh"), Some(1.0));
    assert!(value(&proc_fs, "disk_free_bytes", &[("mount", "/proc")]).is_some());
    // A path df cannot stat: the script fails, the exporter is down, the answer a 200.
    let missing = scrape(&server, "/metrics/system/disk?mount=/nonexistent/example").await;
    assert_eq!(up(&missing, "system/disk.sh"), Some(0.0));
    assert_eq!(value(&missing, "disk_free_bytes", &[]), None);

    let backup = scrape(&server, "/metrics/backup/last_run").await;
    assert_eq!(up(&backup, "backup/last_run.prom"), Some(1.0));
    assert_eq!(
        value(&backup, "backup_size_bytes", &[("database", "orders")]),
        Some(5368709120.0)
    );

    // The http_sd list: one group per exporter (per parameter set of _params.json),
    // each scraped at its own path on this server.
    let sd = get(&server.url("/exporters")).await;
    assert_eq!(sd.status, 200, "{}", sd.body);
    let label =
        |g: &serde_json::Value, name: &str| g["labels"][name].as_str().unwrap_or("").to_string();
    let mut listed: Vec<[String; 4]> = sd
        .json()
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|g| {
            assert_eq!(g["targets"], serde_json::json!([server.addr]), "{g}");
            [
                "exporter",
                "__metrics_path__",
                "__param_mount",
                "exporter_params",
            ]
            .map(|l| label(g, l))
        })
        .collect();
    listed.sort();
    let plain = |e: &str| {
        [
            e.to_string(),
            format!("/metrics/{e}"),
            String::new(),
            String::new(),
        ]
    };
    let disk = |m: &str| {
        let path = "system/disk".to_string();
        [
            path.clone(),
            format!("/metrics/{path}"),
            m.to_string(),
            format!("mount={}", m.replace('/', "%2F")),
        ]
    };
    let want = vec![
        plain("backup/last_run"),
        plain("ci/jenkins_jobs"),
        plain("health/hitl"),
        disk("/"),
        disk("/tmp"),
        plain("system/proc"),
    ];
    assert_eq!(
        listed, want,
        "_standin/, _tools/ and _params.json must not be listed"
    );
}

/// Against the stand-in API over HTTP: the health exporter's module is kept, so its
/// Histogram counts every probe and its Enum follows the endpoint; the Jenkins exporter
/// goes down alone when the API goes away.
#[tokio::test]
async fn health_state_accumulates_and_a_lost_api_is_up_0() {
    require_python();
    let mut api = StandIn::start();
    let health_url = format!("{}/health", api.base);
    let server = serve_examples(&[("JENKINS_URL", &api.base), ("HITL_URL", &health_url)]);
    let count = |f: &[MetricFamily]| value(f, "hitl_psql_health_request_time_count", &[]);
    let state = |f: &[MetricFamily], s: &str| {
        value(
            f,
            "hitl_psql_health_status",
            &[("hitl_psql_health_status", s)],
        )
    };

    let first = scrape(&server, "/metrics/health").await;
    assert_eq!(up(&first, "health/hitl.py"), Some(1.0));
    assert_eq!(state(&first, "healthy"), Some(1.0));
    let n1 = count(&first).expect("histogram count");

    let r = get(&format!("{}/health/fail", api.base)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let second = scrape(&server, "/metrics/health").await;
    assert_eq!(
        up(&second, "health/hitl.py"),
        Some(1.0),
        "an unhealthy endpoint is data, not an error"
    );
    assert_eq!(state(&second, "unhealthy"), Some(1.0));
    assert_eq!(state(&second, "healthy"), Some(0.0));
    assert_eq!(
        count(&second),
        Some(n1 + 1.0),
        "the histogram must keep the first probe"
    );
    assert_eq!(
        value(
            &second,
            "hitl_psql_health_request_time_bucket",
            &[("le", "+Inf")]
        ),
        Some(n1 + 1.0),
        "buckets accumulate too"
    );

    let ci = scrape(&server, "/metrics/ci").await;
    assert_eq!(up(&ci, "ci/jenkins_jobs.py"), Some(1.0));
    assert_eq!(value(&ci, "jenkins_jobs_count", &[]), Some(4.0));

    // The API goes away: the Jenkins exporter is down with its families left out; the
    // health exporter (in the same answer) reports the endpoint unhealthy and stays up.
    api.stop();
    let all = wait_for(
        Duration::from_secs(30),
        "the Jenkins exporter down",
        || async {
            let fams = scrape(&server, "/metrics/ci").await;
            (up(&fams, "ci/jenkins_jobs.py") == Some(0.0)).then_some(fams)
        },
    )
    .await;
    assert_eq!(value(&all, "jenkins_jobs_count", &[]), None);
    let health = scrape(&server, "/metrics/health/hitl").await;
    assert_eq!(up(&health, "health/hitl.py"), Some(1.0));
    assert_eq!(state(&health, "unhealthy"), Some(1.0));
    assert_eq!(count(&health), Some(n1 + 2.0));
}
