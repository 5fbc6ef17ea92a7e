//! End to end with a real Prometheus (Debian's `prometheus` package, 2.42): Prometheus
//! discovers targets through `http_sd_configs` pointing at `httpsd serve` under a URL
//! prefix with basic auth (static files, a Python and an executable generator with a
//! query parameter),
//! sees a generator change after its refresh, and scrapes httpsd's own `/metrics` with
//! `up == 1`; and Prometheus scrapes a `multiproc-exporter` with `up == 1` and reads
//! the counter that Python workers wrote, merged.
//!
//! Prometheus's discovery manager batches updates every 5 s, so every wait here polls
//! with a deadline of about 25 s; the whole test takes 15-25 s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Server, Tree, client};

/// bcrypt (cost 4) of "e2e-secret", made with libcrypt's `crypt(3)`.
const E2E_BCRYPT: &str = "$2b$04$ySbYid8CGhfC/sIFFomVC.WGSlt9hhOfd7yHShiDGJ8oqx5YzA3qy";

/// How long to wait for Prometheus to notice something (5 s batching + refresh).
const PROM_WAIT: Duration = Duration::from_secs(25);

/// A running Prometheus on a free loopback port, killed on drop.
struct Prometheus {
    child: Option<Child>,
    base: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Writes `config` and starts Prometheus with it; waits until `/-/ready`.
    async fn start(config: &str) -> Prometheus {
        require_prometheus();
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, config).expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let prom = Prometheus {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client().get(prom.url("/-/ready")).send().await
                && r.status().is_success()
            {
                return prom;
            }
            if Instant::now() > deadline {
                panic!(
                    "Prometheus did not become ready within 20 s; log:\n{}",
                    prom.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Prometheus's own log so far (for failure messages).
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// GET an API path and return `data` of a successful answer.
    async fn api(&self, path_and_query: &str) -> Option<Value> {
        let r = client().get(self.url(path_and_query)).send().await.ok()?;
        let v: Value = r.json().await.ok()?;
        (v["status"] == "success").then(|| v["data"].clone())
    }

    /// The active targets of `job`: (labels after relabeling, `__meta_url`).
    async fn targets(&self, job: &str) -> Option<Vec<(BTreeMap<String, String>, String)>> {
        let data = self.api("/api/v1/targets?state=active").await?;
        let mut out = Vec::new();
        for t in data["activeTargets"].as_array()? {
            if t["labels"]["job"] != job {
                continue;
            }
            let labels: BTreeMap<String, String> =
                serde_json::from_value(t["labels"].clone()).expect("labels are a map of strings");
            let meta_url = t["discoveredLabels"]["__meta_url"]
                .as_str()
                .unwrap_or("")
                .to_string();
            out.push((labels, meta_url));
        }
        Some(out)
    }

    /// Polls until the label sets of `job`'s targets equal `expected`; returns the
    /// `__meta_url` values seen; panics with what was last seen after `PROM_WAIT`.
    async fn wait_targets(
        &self,
        job: &str,
        expected: &BTreeSet<BTreeMap<String, String>>,
    ) -> BTreeSet<String> {
        let deadline = Instant::now() + PROM_WAIT;
        let mut last = None;
        loop {
            if let Some(ts) = self.targets(job).await {
                let got: BTreeSet<_> = ts.iter().map(|(l, _)| l.clone()).collect();
                if &got == expected && ts.len() == expected.len() {
                    return ts.into_iter().map(|(_, u)| u).collect();
                }
                last = Some(got);
            }
            if Instant::now() > deadline {
                panic!(
                    "Prometheus did not show the expected targets of job {job} within {PROM_WAIT:?}\n\
                     expected: {expected:#?}\nlast seen: {last:#?}\nPrometheus log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Polls an instant query until it returns exactly one sample equal to `want`.
    async fn wait_query(&self, query: &str, want: f64) {
        let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
        let deadline = Instant::now() + PROM_WAIT;
        let mut last = Value::Null;
        loop {
            if let Some(data) = self.api(&format!("/api/v1/query?query={q}")).await {
                let result = &data["result"];
                if let Some([one]) = result.as_array().map(|v| v.as_slice())
                    && let Some(v) = one["value"][1].as_str()
                    && v.parse::<f64>().ok() == Some(want)
                {
                    return;
                }
                last = result.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "query {query} did not return one sample equal to {want} within {PROM_WAIT:?}; \
                     last result: {last}\nPrometheus log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Fails loudly when Prometheus is not installed (tests never skip silently).
fn require_prometheus() {
    let ok = Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "`prometheus` is required on PATH for the end-to-end test: \
         install it with `apt-get install -y prometheus` (Debian's package, 2.42)"
    );
}

/// A currently free loopback port (Prometheus cannot be told to bind port 0 and
/// report it, so we pick one and release it just before it starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

/// One expected target: its address, the job, and the group labels.
fn target(job: &str, addr: &str, labels: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    m.insert("instance".into(), addr.into());
    m.insert("job".into(), job.into());
    m
}

/// The host:port of an httpsd base URL.
fn host_port(base: &str) -> &str {
    base.trim_start_matches("http://")
}

fn write_tree(tree: &Tree) {
    // Scraped addresses are closed loopback ports: scrapes fail fast, discovery is
    // what this test looks at.
    tree.write(
        "node/a.json",
        r#"[{"targets": ["127.0.0.1:9", "127.0.0.1:10"], "labels": {"team": "db", "env": "prod"}}]"#,
    );
    tree.write(
        "node/sub/b.yaml",
        "- targets: ['127.0.0.1:11']\n  labels:\n    team: web\n",
    );
    tree.write("node/_ignored.json", r#"[{"targets": ["127.0.0.1:99"]}]"#);
    tree.write("other/c.json", r#"[{"targets": ["127.0.0.1:12"]}]"#);
    // A Python generator: query parameters arrive as keyword arguments.
    tree.write(
        "py/gen.py",
        "def generate_targets(**params):\n    return [{'targets': ['127.0.0.1:16'], \
         'labels': {'env': params.get('env', 'none'), 'src': 'python'}}]\n",
    );
    // An executable generator: query parameters arrive as HTTPSD_PARAM_<NAME>.
    tree.write_exec(
        "dyn/gen.sh",
        "#!/bin/sh\nprintf '[{\"targets\": [\"127.0.0.1:15\"], \"labels\": {\"env\": \"%s\"}}]' \"$HTTPSD_PARAM_ENV\"\n",
    );
}

fn config(httpsd: &str) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 500ms
scrape_configs:
  - job_name: sd
    http_sd_configs:
      - url: http://{httpsd}/http_sd/targets/node
        refresh_interval: 1s
        basic_auth: {{username: e2e, password: e2e-secret}}
  - job_name: exe
    http_sd_configs:
      - url: http://{httpsd}/http_sd/targets/dyn?env=staging
        refresh_interval: 1s
        basic_auth: {{username: e2e, password: e2e-secret}}
  - job_name: py
    http_sd_configs:
      - url: http://{httpsd}/http_sd/targets/py?env=canary
        refresh_interval: 1s
        basic_auth: {{username: e2e, password: e2e-secret}}
  - job_name: httpsd
    metrics_path: /http_sd/metrics
    basic_auth: {{username: e2e, password: e2e-secret}}
    static_configs:
      - targets: ['{httpsd}']
"#
    )
}

fn rewrite(path: &Path, content: &str) {
    // Write to a sibling and rename, as editors and config management do.
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_discovers_targets_follows_changes_and_scrapes_metrics() {
    require_prometheus();
    crate::helpers::require_python();
    let tree = Tree::new();
    write_tree(&tree);
    // Basic auth (htpasswd -B format; cost 4 keeps the test fast): Prometheus sends it.
    let users = tree.write("_auth/users", format!("e2e:{E2E_BCRYPT}\n"));
    let users = users.display().to_string();
    let server = Server::serve(
        tree.root(),
        &["-r", "/http_sd", "--basic-auth-file", users.as_str()],
    );
    let anonymous = crate::helpers::get(&server.url("/http_sd/targets/node")).await;
    assert_eq!(anonymous.status, 401, "no credentials: {}", anonymous.body);
    let httpsd = host_port(&server.base).to_string();
    let prom = Prometheus::start(&config(&httpsd)).await;

    // Discovery under the URL prefix: exactly the generators below /node, with labels.
    let expected: BTreeSet<_> = [
        target("sd", "127.0.0.1:9", &[("team", "db"), ("env", "prod")]),
        target("sd", "127.0.0.1:10", &[("team", "db"), ("env", "prod")]),
        target("sd", "127.0.0.1:11", &[("team", "web")]),
    ]
    .into();
    let urls = prom.wait_targets("sd", &expected).await;
    assert_eq!(
        urls,
        BTreeSet::from([format!("http://{httpsd}/http_sd/targets/node")]),
        "__meta_url is the prefixed URL Prometheus asked"
    );

    // A dynamic generator gets the query parameter of the http_sd_configs URL.
    let exe = BTreeSet::from([target("exe", "127.0.0.1:15", &[("env", "staging")])]);
    prom.wait_targets("exe", &exe).await;
    let py = BTreeSet::from([target(
        "py",
        "127.0.0.1:16",
        &[("env", "canary"), ("src", "python")],
    )]);
    prom.wait_targets("py", &py).await;

    // A generator change reaches Prometheus after its refresh.
    rewrite(
        &tree.root().join("node/sub/b.yaml"),
        "- targets: ['127.0.0.1:13', '127.0.0.1:14']\n  labels:\n    team: web\n    tier: \"2\"\n",
    );
    let changed: BTreeSet<_> = [
        target("sd", "127.0.0.1:9", &[("team", "db"), ("env", "prod")]),
        target("sd", "127.0.0.1:10", &[("team", "db"), ("env", "prod")]),
        target("sd", "127.0.0.1:13", &[("team", "web"), ("tier", "2")]),
        target("sd", "127.0.0.1:14", &[("team", "web"), ("tier", "2")]),
    ]
    .into();
    prom.wait_targets("sd", &changed).await;

    // Prometheus scrapes httpsd's own /metrics under the prefix.
    prom.wait_query(r#"up{job="httpsd"}"#, 1.0).await;

    // And httpsd counted Prometheus's discovery requests.
    let metrics = {
        let r = client()
            .get(server.url("/http_sd/metrics"))
            .basic_auth("e2e", Some("e2e-secret"))
            .send()
            .await
            .expect("GET /http_sd/metrics");
        crate::helpers::Resp {
            status: r.status().as_u16(),
            content_type: String::new(),
            body: r.text().await.expect("body"),
        }
    };
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l.starts_with("httpsd_path_requests_total{") && l.contains("path=\"node\"")),
        "httpsd counted requests for path node:\n{}",
        metrics.body
    );
}

/// The `multiproc-exporter` binary: cargo builds it next to `httpsd` when the workspace
/// is tested (`cargo test --workspace`, as `scripts/test.sh` does).
fn multiproc_exporter_bin() -> std::path::PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_httpsd")).with_file_name("multiproc-exporter");
    assert!(
        p.is_file(),
        "multiproc-exporter not found at {}: build it with `cargo build -p multiproc-exporter` \
         (`cargo test --workspace` builds it)",
        p.display()
    );
    p
}

/// Fails loudly unless python3 can import prometheus_client.
fn require_prometheus_client() {
    let ok = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 with prometheus_client is required: pip install prometheus-client==0.26.0"
    );
}

/// A running multiproc-exporter, killed on drop.
struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_multiproc_exporter_merged_counter() {
    require_prometheus();
    require_prometheus_client();
    let bin = multiproc_exporter_bin();
    let dir = tempfile::tempdir().expect("temp dir");
    // Three Python worker processes (three pids, three .db files) add 1, 2 and 4.
    for n in ["1", "2", "4"] {
        let status = Command::new("python3")
            .env("PROMETHEUS_MULTIPROC_DIR", dir.path())
            .args([
                "-c",
                "import sys\nfrom prometheus_client import Counter\n\
                 Counter('e2e_jobs', 'Jobs done', ['queue']).labels('default').inc(float(sys.argv[1]))",
                n,
            ])
            .status()
            .expect("run python3");
        assert!(status.success(), "python worker failed");
    }
    let port = free_port();
    let _exporter = Exporter(
        Command::new(&bin)
            .arg(dir.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn multiproc-exporter"),
    );
    crate::helpers::wait_for(
        Duration::from_secs(20),
        "multiproc-exporter /healthz",
        || async {
            let r = client()
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
    let prom = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 500ms\nscrape_configs:\n  \
         - job_name: mpe\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    ))
    .await;
    prom.wait_query(r#"up{job="mpe"}"#, 1.0).await;
    prom.wait_query(r#"e2e_jobs_total{job="mpe",queue="default"}"#, 7.0)
        .await;
}

/// Prometheus discovers the exporters through one `http_sd_configs` entry on
/// `P/exporters` and scrapes each: `up == 1` for every exporter path, their series
/// queryable, including an executable whose parameter comes from `_params.json`
/// (`__param_target`), and `httpsd_exporter_up` per exporter file, whose `exporter`
/// label is its target's (with `honor_labels: true`, as examples/exporters/prometheus.yml
/// configures it: no `exported_exporter`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_discovers_and_scrapes_exporters() {
    require_prometheus();
    require_prometheus_client();
    let targets = Tree::new();
    let ex = Tree::new();
    ex.write("jobs.py", crate::exporters::JOBS_PY);
    ex.write("backup.prom", crate::exporters::BACKUP_PROM);
    // Two files of one exporter path: one target, two series of httpsd's own families.
    ex.write(
        "jobs.prom",
        "# TYPE jobs_build_info gauge\njobs_build_info 1\n",
    );
    ex.write_exec("probe.sh", crate::exporters::PROBE_SH);
    ex.write("_params.json", r#"{"probe": [{"target": "db1"}]}"#);
    let dir = ex.root().display().to_string();
    let server = Server::serve(
        targets.root(),
        &["--url-prefix", "/sd", "--exporters", &dir],
    );
    let addr = host_port(&server.base);
    let prom = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  \
         - job_name: exporters\n    honor_labels: true\n    http_sd_configs:\n      - url: http://{addr}/sd/exporters\n        \
         refresh_interval: 1s\n"
    ))
    .await;
    for exporter in ["jobs", "backup", "probe"] {
        prom.wait_query(
            &format!(r#"up{{job="exporters",exporter="{exporter}"}}"#),
            1.0,
        )
        .await;
    }
    prom.wait_query(r#"jenkins_jobs{exporter="jobs",state="ok"}"#, 3.0)
        .await;
    prom.wait_query(r#"backup_last_success_seconds{exporter="backup"}"#, 1.7e9)
        .await;
    prom.wait_query(
        r#"probe_ok{exporter="probe",exporter_params="target=db1",target="db1"}"#,
        1.0,
    )
    .await;
    // httpsd's own series carry their target's `exporter` label value: per target
    // label value (as Prometheus's target list gives it), as many series as the path has
    // files, all up; no other value, and nothing renamed to `exported_exporter`.
    let files = BTreeMap::from([("backup", 1.0), ("jobs", 2.0), ("probe", 1.0)]);
    let seen: BTreeSet<String> = (prom.targets("exporters").await.unwrap_or_default())
        .into_iter()
        .filter_map(|(labels, _)| labels.get("exporter").cloned())
        .collect();
    assert_eq!(seen, files.keys().map(|k| k.to_string()).collect());
    for (exporter, n) in &files {
        prom.wait_query(
            &format!(r#"count(httpsd_exporter_up{{job="exporters",exporter="{exporter}"}} == 1)"#),
            *n,
        )
        .await;
    }
    prom.wait_query(r#"count(httpsd_exporter_up{job="exporters"})"#, 4.0)
        .await;
    prom.wait_query(
        r#"httpsd_exporter_up{job="exporters",exporter="jobs",file="jobs.prom"}"#,
        1.0,
    )
    .await;
    prom.wait_query(
        r#"httpsd_exporter_up{job="exporters",exporter="probe",file="probe.sh",exporter_params="target=db1"}"#,
        1.0,
    )
    .await;
    prom.wait_query(
        r#"count(httpsd_exporter_duration_seconds{exported_exporter!=""} or httpsd_exporter_up{exported_exporter!=""}) or vector(0)"#,
        0.0,
    )
    .await;
}
