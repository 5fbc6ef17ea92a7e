//! `server-only` + `worker-only` over a real `redis-server` started on a free port:
//! generation, stale-while-revalidate, the reliable queue under kill -9, Redis
//! outages, concurrency across servers and workers, debug/reload, key prefixes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Resp, Server, Tree, client, get, wait_for};

/// A `redis-server` of our own on a free loopback port, killed on drop.
pub(crate) struct RedisServer {
    child: Option<Child>,
    port: u16,
    extra: Vec<String>,
    /// Serve TLS only, with the certificates in this directory.
    tls: Option<std::path::PathBuf>,
}

impl RedisServer {
    pub(crate) fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> RedisServer {
        let ok = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "redis-server is required for the scale-out tests: install it (apt-get install -y redis-server)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut r = RedisServer {
            child: None,
            port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tls: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        match &self.tls {
            None => cmd.args(["--port", &self.port.to_string()]),
            Some(dir) => cmd
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args(["--tls-auth-clients", "no"])
                .arg("--tls-cert-file")
                .arg(dir.join("redis.crt"))
                .arg("--tls-key-file")
                .arg(dir.join("redis.key"))
                .arg("--tls-ca-cert-file")
                .arg(dir.join("ca.crt")),
        };
        let child = cmd
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                if self.tls.is_some() {
                    return;
                }
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 64];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf)
                        .is_ok_and(|n| n > 0 && (buf[0] == b'+' || buf[0] == b'-'))
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// kill -9, as an outage.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn con(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("client")
            .get_connection()
            .expect("connect to test redis")
    }

    fn keys(&self) -> Vec<String> {
        let mut v: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut self.con())
            .expect("KEYS");
        v.sort();
        v
    }

    fn llen(&self, key: &str) -> i64 {
        redis::cmd("LLEN")
            .arg(key)
            .query(&mut self.con())
            .expect("LLEN")
    }

    fn scard(&self, key: &str) -> i64 {
        redis::cmd("SCARD")
            .arg(key)
            .query(&mut self.con())
            .expect("SCARD")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn server_only(root: &Path, redis: &str, extra: &[&str]) -> Server {
    let mut args: Vec<String> = vec![
        "server-only".into(),
        root.display().to_string(),
        "-p".into(),
        "0".into(),
        "--redis-url".into(),
        redis.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start(&args)
}

pub(crate) fn worker(root: &Path, redis: &str, extra: &[&str]) -> Server {
    let mut args: Vec<String> = vec![
        "worker-only".into(),
        root.display().to_string(),
        "-h".into(),
        "127.0.0.1".into(),
        "-p".into(),
        "0".into(),
        "--redis-url".into(),
        redis.into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start(&args)
}

/// True while the process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with(|c| c != 'Z')))
        .unwrap_or(false)
}

fn kill9(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// A generator (executable) that logs each run to `runs` outside the tree, sleeps,
/// and prints one group whose target names the run number.
fn counting_generator(tree: &Tree, rel: &str, runs: &Path, sleep: &str) {
    tree.write_exec(
        rel,
        &format!(
            "#!/bin/sh\necho run >> '{runs}'\nn=$(wc -l < '{runs}' | tr -d ' ')\nsleep {sleep}\nprintf '[{{\"targets\":[\"host:%s\"],\"labels\":{{\"gen\":\"{rel}\"}}}}]' \"$n\"\n",
            runs = runs.display()
        ),
    );
}

fn runs(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

async fn get_with_header(url: &str) -> (Resp, Option<String>) {
    let r = client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("x-httpsd-cache")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = r.text().await.expect("body");
    (
        Resp {
            status,
            content_type,
            body,
        },
        cache,
    )
}

fn counts_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_two_workers_generate_once_and_serve_stale_while_refreshing() {
    let redis = RedisServer::start();
    let tree = Tree::new();
    let counts = counts_dir();
    let runs_file = counts.path().join("a.runs");
    counting_generator(&tree, "a/gen", &runs_file, "0.3");
    tree.write("static/s.json", r#"[{"targets":["s:1"]}]"#);
    let server = server_only(
        tree.root(),
        &redis.url(),
        &["--cache-time", "2", "--max-stale", "60", "--wait", "10"],
    );
    let _w1 = worker(tree.root(), &redis.url(), &["--num-workers", "1"]);
    let _w2 = worker(tree.root(), &redis.url(), &["--num-workers", "1"]);

    let (r, cache) = get_with_header(&server.url("/targets/a")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type, "application/json");
    assert_eq!(
        r.json(),
        serde_json::json!([{"targets": ["host:1"], "labels": {"gen": "a/gen"}}])
    );
    assert_eq!(cache.as_deref(), Some("miss"));
    let (r, cache) = get_with_header(&server.url("/targets/a/")).await;
    assert_eq!(r.json()[0]["targets"][0], "host:1");
    assert_eq!(cache.as_deref(), Some("hit"));
    assert_eq!(runs(&runs_file), 1, "generated once for both requests");
    let r = get(&server.url("/targets/static")).await;
    assert_eq!(r.json(), serde_json::json!([{"targets": ["s:1"]}]));

    // After --cache-time 2 s the result is stale: served at once while one refresh runs.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    // The stale answer does not wait for the run: it is the old result, marked stale.
    let (r, cache) = get_with_header(&server.url("/targets/a")).await;
    assert_eq!(cache.as_deref(), Some("stale"));
    assert_eq!(r.json()[0]["targets"][0], "host:1");
    let _ = get(&server.url("/targets/a")).await;
    wait_for(Duration::from_secs(10), "the refreshed result", || {
        let url = server.url("/targets/a");
        async move {
            let (r, cache) = get_with_header(&url).await;
            (r.status == 200
                && r.json()[0]["targets"][0] == "host:2"
                && cache.as_deref() == Some("hit"))
            .then_some(())
        }
    })
    .await;
    assert_eq!(
        runs(&runs_file),
        2,
        "one refresh for several stale requests"
    );
    assert_eq!(redis.scard("httpsd:pending"), 0);
    assert_eq!(redis.llen("httpsd:queue"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_job_loses_nothing() {
    let redis = RedisServer::start();
    let tree = Tree::new();
    let counts = counts_dir();
    let runs_file = counts.path().join("slow.runs");
    counting_generator(&tree, "slow/gen", &runs_file, "2");
    let server = server_only(tree.root(), &redis.url(), &["--wait", "0.2"]);
    let fast = [
        "--heartbeat-timeout",
        "1",
        "--stale-job-check-interval",
        "1",
    ];
    let mut args_a = vec!["--worker-id", "wa"];
    args_a.extend(fast);
    let wa = worker(tree.root(), &redis.url(), &args_a);

    let r = get(&server.url("/targets/slow")).await;
    assert_eq!(r.status, 503, "miss not ready within --wait: {}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("no result yet"),
        "{}",
        r.body
    );
    wait_for(
        Duration::from_secs(10),
        "worker A to start the job",
        || async { (runs(&runs_file) == 1).then_some(()) },
    )
    .await;
    assert_eq!(redis.llen("httpsd:processing:wa"), 1);
    kill9(wa.pid());

    let mut args_b = vec!["--worker-id", "wb"];
    args_b.extend(fast);
    let wb = worker(tree.root(), &redis.url(), &args_b);
    let body = wait_for(
        Duration::from_secs(20),
        "worker B to complete the job",
        || {
            let url = server.url("/targets/slow");
            async move {
                let r = get(&url).await;
                (r.status == 200).then_some(r.json())
            }
        },
    )
    .await;
    assert_eq!(body[0]["targets"][0], "host:2", "run again by worker B");
    assert_eq!(runs(&runs_file), 2);
    assert_eq!(
        redis.llen("httpsd:processing:wa"),
        0,
        "dead worker's list emptied"
    );
    assert_eq!(redis.llen("httpsd:processing:wb"), 0);
    assert_eq!(redis.llen("httpsd:queue"), 0);
    assert_eq!(redis.scard("httpsd:pending"), 0);
    let metrics = get(&wb.url("/metrics")).await.body;
    assert!(
        metrics.contains("httpsd_redis_stale_jobs_cleaned_total 1.0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "httpsd_redis_worker_jobs_processed_total{status=\"success\",worker_id=\"wb\"} 1.0\n"
        ),
        "{metrics}"
    );
    assert!(
        wb.log_text().contains("worker is gone"),
        "{}",
        wb.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_gives_503s_then_full_recovery() {
    let mut redis = RedisServer::start();
    let tree = Tree::new();
    for p in ["a", "b", "c"] {
        tree.write(
            &format!("{p}/t.json"),
            format!(r#"[{{"targets":["{p}:1"]}}]"#),
        );
    }
    let server = server_only(tree.root(), &redis.url(), &["--wait", "3"]);
    let w = worker(tree.root(), &redis.url(), &["--num-workers", "2"]);
    assert_eq!(get(&server.url("/targets/a")).await.status, 200);

    // Load from four tasks for the whole test: every answer is a complete list or an
    // explicit JSON error, never anything else.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for i in 0..4 {
        // The last task asks for a new key each time: never in this server's memory.
        let url = server.url(["/targets/a", "/targets/b", "/targets/", "/targets/c?n="][i]);
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let (mut ok, mut unavailable) = (0, 0);
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let r = if url.ends_with('=') {
                    get(&format!("{url}{n}")).await
                } else {
                    get(&url).await
                };
                match r.status {
                    200 => {
                        assert!(
                            r.json().as_array().is_some_and(|a| !a.is_empty()),
                            "{}",
                            r.body
                        );
                        ok += 1;
                    }
                    503 => {
                        assert!(r.json()["error"].is_string(), "{}", r.body);
                        unavailable += 1;
                    }
                    s => panic!("unexpected {s}: {}", r.body),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, unavailable)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // What this server already served is answered from memory; the rest is a 503.
    let (r, cache) = get_with_header(&server.url("/targets/a")).await;
    assert_eq!(
        (r.status, cache.as_deref()),
        (200, Some("memory")),
        "{}",
        r.body
    );
    let r = get(&server.url("/targets/a/?x=never-seen")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("redis unavailable"),
        "{}",
        r.body
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        alive(server.pid()) && alive(w.pid()),
        "no crash during the outage"
    );
    redis.spawn();
    // Redis came back empty (no persistence): everything is regenerated.
    for path in ["/targets/a/?x=never-seen", "/targets/b", "/targets/c"] {
        let url = server.url(path);
        wait_for(Duration::from_secs(15), "recovery", || {
            let url = url.clone();
            async move {
                let (r, cache) = get_with_header(&url).await;
                (r.status == 200 && cache.as_deref() != Some("memory")).then_some(())
            }
        })
        .await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut unavailable_total = 0;
    for l in load {
        let (ok, unavailable) = l.await.expect("load task");
        assert!(ok > 0);
        unavailable_total += unavailable;
    }
    assert!(
        unavailable_total > 0,
        "paths never served by this server are 503 during the outage"
    );
    assert!(alive(server.pid()) && alive(w.pid()));
    assert!(
        server.log_text().contains("cannot reach Redis"),
        "{}",
        server.log_text()
    );
    assert!(server.log_text().contains("connected to Redis"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_three_workers_under_concurrent_load() {
    let redis = RedisServer::start();
    let tree = Tree::new();
    let counts = counts_dir();
    let paths: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    for p in &paths {
        counting_generator(&tree, &format!("{p}/gen"), &counts.path().join(p), "0.2");
    }
    let s1 = server_only(tree.root(), &redis.url(), &["--wait", "20"]);
    let s2 = server_only(tree.root(), &redis.url(), &["--wait", "20"]);
    let _workers: Vec<Server> = (0..3)
        .map(|_| worker(tree.root(), &redis.url(), &["--num-workers", "2"]))
        .collect();
    let mut tasks = Vec::new();
    for round in 0..4 {
        for p in &paths {
            for s in [&s1, &s2] {
                // Parameter order differs between requests: still one job.
                let q = if round % 2 == 0 {
                    "?a=1&b=2"
                } else {
                    "?b=2&a=1"
                };
                let url = s.url(&format!("/targets/{p}{q}"));
                let p = p.clone();
                tasks.push(tokio::spawn(async move {
                    let r = get(&url).await;
                    match r.status {
                        200 => {
                            let v = r.json();
                            assert_eq!(v[0]["labels"]["gen"], format!("{p}/gen"), "{}", r.body);
                            assert_eq!(v[0]["targets"][0], "host:1", "{}", r.body);
                        }
                        503 => assert!(r.json()["error"].is_string(), "{}", r.body),
                        s => panic!("unexpected {s}: {}", r.body),
                    }
                    r.status
                }));
            }
        }
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.expect("request task") == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 64, "every request got its list within --wait");
    for p in &paths {
        assert_eq!(runs(&counts.path().join(p)), 1, "{p} ran exactly once");
    }
    assert_eq!(redis.scard("httpsd:pending"), 0);
    assert_eq!(redis.llen("httpsd:queue"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_and_reload_with_and_without_a_url_prefix() {
    let redis = RedisServer::start();
    let tree = Tree::new();
    let counts = counts_dir();
    let runs_file = counts.path().join("x.runs");
    counting_generator(&tree, "x/gen", &runs_file, "0");
    tree.write_exec(
        "bad/gen",
        "#!/bin/sh\necho 'boom: inventory down' >&2\nexit 3\n",
    );
    counting_generator(&tree, "slow/gen", &counts.path().join("slow.runs"), "3");
    let plain = server_only(tree.root(), &redis.url(), &["--hard-reload-timeout", "10"]);
    let pfx = server_only(
        tree.root(),
        &redis.url(),
        &[
            "-r",
            "/pfx",
            "--hard-reload-timeout",
            "1",
            "--hard-reload-poll-interval",
            "0.1",
        ],
    );
    let _w = worker(tree.root(), &redis.url(), &["--num-workers", "2"]);

    let d = get(&pfx.url("/pfx/targets/x?debug=true&b=2&a=1")).await;
    assert_eq!(d.status, 200);
    assert_eq!(
        d.json(),
        serde_json::json!({
            "debug_info": null,
            "message": "No error information available yet. Please trigger job processing first.",
            "requested_path": "/targets/x?a=1&b=2",
            "status": "no_debug_info",
            "suggestion": "Try the request without ?debug=true first to trigger job processing, then retry with ?debug=true",
        })
    );
    let r = get(&pfx.url("/pfx/targets/x?a=1&b=2")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for url in [
        pfx.url("/pfx/targets/x?b=2&debug=true&a=1"),
        plain.url("/targets/x?a=1&b=2&debug=true"),
    ] {
        let d = get(&url).await.json();
        assert_eq!(
            d["requested_path"], "/targets/x?a=1&b=2",
            "same key with and without prefix"
        );
        let cache = &d["debug_info"]["normal_cache"];
        assert_eq!(cache["status"], "success");
        assert_eq!(cache["results"], r.json());
        assert!(
            cache["cache_age_seconds"]
                .as_str()
                .unwrap()
                .ends_with("s ago")
        );
        assert!(cache["updated_timestamp"].is_string());
    }

    // Hard reload through the prefix: regenerated, same key as normal requests.
    let rl = get(&pfx.url("/pfx/targets/x?reload=true&b=2&a=1")).await;
    assert_eq!(rl.status, 200, "{}", rl.body);
    let v = rl.json();
    assert_eq!(v["status"], "reload_complete");
    assert_eq!(v["path"], "/targets/x?a=1&b=2");
    assert_eq!(v["results"][0]["targets"][0], "host:2");
    assert!(v["processing_time"].as_str().unwrap().ends_with('s'));
    let r = get(&plain.url("/targets/x?b=2&a=1")).await;
    assert_eq!(
        r.json()[0]["targets"][0],
        "host:2",
        "the other server sees the reloaded result"
    );
    assert_eq!(runs(&runs_file), 2);

    // A failing generator: 500 with a JSON error (never 200), error stored with its stderr.
    let r = get(&plain.url("/targets/bad")).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(
        r.json()["generators"][0]["generator"] == "bad/gen",
        "{}",
        r.body
    );
    let d = get(&pfx.url("/pfx/targets/bad?debug=true")).await.json();
    let e = &d["debug_info"]["error_details"];
    assert_eq!(e["job_id"], "/targets/bad?");
    assert!(
        e["traceback"]
            .as_str()
            .unwrap()
            .contains("boom: inventory down"),
        "{d}"
    );
    for field in [
        "error_type",
        "error_message",
        "worker_id",
        "timestamp",
        "timestamp_human",
        "processing_time",
        "extra_args",
        "path",
    ] {
        assert!(!e[field].is_null(), "error_details.{field} missing: {d}");
    }
    assert!(d["debug_info"].get("normal_cache").is_none());
    let rl = get(&plain.url("/targets/bad?reload=true")).await;
    assert_eq!(rl.status, 500);
    assert_eq!(rl.json()["status"], "reload_error");
    assert!(
        rl.json()["error"]["traceback"]
            .as_str()
            .unwrap()
            .contains("boom")
    );

    // A run longer than the hard-reload timeout.
    let rl = get(&pfx.url("/pfx/targets/slow?reload=true")).await;
    assert_eq!(rl.status, 503, "{}", rl.body);
    let v = rl.json();
    assert_eq!(v["status"], "reload_timeout");
    assert_eq!(v["timeout"], "1.00s");
    assert_eq!(
        v["message"],
        "Please reload the page without ?reload=true later."
    );
    let d = get(&plain.url("/targets/slow?debug=true")).await.json();
    assert_eq!(d["status"], "processing", "{d}");
    assert_eq!(d["requested_path"], "/targets/slow?");

    // Unknown paths never reach Redis.
    let r = get(&pfx.url("/pfx/targets/nope")).await;
    assert_eq!(r.status, 404);
    assert!(!redis.keys().iter().any(|k| k.contains("nope")));
    let r = get(&pfx.url("/pfx/targets/..%2Fetc")).await;
    assert_eq!(r.status, 400);
    assert_eq!(get(&pfx.url("/pfx/metrics")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_prefixes_isolate_deployments() {
    let redis = RedisServer::start();
    let (ta, tb) = (Tree::new(), Tree::new());
    ta.write("svc/t.json", r#"[{"targets":["team-a:1"]}]"#);
    tb.write("svc/t.json", r#"[{"targets":["team-b:1"]}]"#);
    let sa = server_only(ta.root(), &redis.url(), &["--redis-prefix", "teamA:"]);
    let sb = server_only(tb.root(), &redis.url(), &["--redis-prefix", "teamB:"]);
    let sc = server_only(
        tb.root(),
        &redis.url(),
        &["--redis-prefix", "teamC:", "--wait", "0.3"],
    );
    let _wa = worker(
        ta.root(),
        &redis.url(),
        &["--redis-prefix", "teamA:", "--num-workers", "1"],
    );
    let _wb = worker(
        tb.root(),
        &redis.url(),
        &["--redis-prefix", "teamB:", "--num-workers", "1"],
    );
    assert_eq!(
        get(&sa.url("/targets/svc")).await.json()[0]["targets"][0],
        "team-a:1"
    );
    assert_eq!(
        get(&sb.url("/targets/svc")).await.json()[0]["targets"][0],
        "team-b:1"
    );
    // No worker serves teamC: its job waits in its own queue, nobody else's.
    let r = get(&sc.url("/targets/svc")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(redis.llen("teamC:queue"), 1);
    assert_eq!(redis.llen("teamA:queue") + redis.llen("teamB:queue"), 0);
    let keys = redis.keys();
    assert!(
        keys.iter()
            .all(|k| k.starts_with("teamA:") || k.starts_with("teamB:") || k.starts_with("teamC:")),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"teamA:result:/targets/svc?".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"teamB:result:/targets/svc?".to_string()),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_redis_and_works_with_a_password() {
    let tree = Tree::new();
    tree.write("a/t.json", r#"[{"targets":["a:1"]}]"#);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("redis://:s3cret-pw@127.0.0.1:{port}/0");
    // Neither crashes when Redis is not there yet.
    let server = server_only(tree.root(), &url, &["--wait", "5"]);
    let w = worker(tree.root(), &url, &["--num-workers", "1"]);
    let r = get(&server.url("/targets/a")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    wait_for(Duration::from_secs(5), "the startup error", || async {
        server
            .log_text()
            .contains("cannot reach Redis")
            .then_some(())
    })
    .await;
    // Now Redis starts, with a password.
    let mut redis = RedisServer {
        child: None,
        port,
        extra: vec!["--requirepass".into(), "s3cret-pw".into()],
        tls: None,
    };
    redis.spawn();
    let body = wait_for(Duration::from_secs(15), "recovery", || {
        let url = server.url("/targets/a");
        async move {
            let r = get(&url).await;
            (r.status == 200).then_some(r.json())
        }
    })
    .await;
    assert_eq!(body[0]["targets"][0], "a:1");
    assert!(alive(w.pid()));
    for log in [server.log_text(), w.log_text()] {
        assert!(
            !log.contains("s3cret-pw"),
            "password leaked into the log:\n{log}"
        );
        assert!(log.contains(":***@127.0.0.1"), "{log}");
    }
    // A wrong password is a clear error, not a crash.
    let bad = format!("redis://:wrong@127.0.0.1:{port}/0");
    let s2 = server_only(tree.root(), &bad, &["--wait", "0.2"]);
    let r = get(&s2.url("/targets/a")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(alive(s2.pid()));
    // Bad URLs are refused at startup with exit code 2.
    let out = Command::new(crate::helpers::bin())
        .args([
            "server-only",
            &tree.root().display().to_string(),
            "--redis-url",
            "http://:pw@x",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--redis-url") && !err.contains(":pw@"),
        "{err}"
    );
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_finishes_its_job_on_sigterm() {
    let redis = RedisServer::start();
    let tree = Tree::new();
    let counts = counts_dir();
    let runs_file = counts.path().join("s.runs");
    counting_generator(&tree, "s/gen", &runs_file, "1.5");
    let server = server_only(tree.root(), &redis.url(), &["--wait", "0.1"]);
    let mut w = worker(tree.root(), &redis.url(), &["--worker-id", "w1"]);
    assert_eq!(get(&server.url("/targets/s")).await.status, 503);
    wait_for(Duration::from_secs(10), "the job to start", || async {
        (runs(&runs_file) == 1).then_some(())
    })
    .await;
    let t = Instant::now();
    let status = w.terminate();
    assert!(status.success(), "{status:?}\n{}", w.log_text());
    assert!(
        t.elapsed() >= Duration::from_millis(800),
        "waited for the running job"
    );
    assert!(w.log_text().contains("Worker pool stopped"));
    let r = get(&server.url("/targets/s")).await;
    assert_eq!(
        r.status, 200,
        "the finished job's result was stored: {}",
        r.body
    );
    assert_eq!(runs(&runs_file), 1);
    assert_eq!(redis.llen("httpsd:processing:w1"), 0);
    assert!(!redis.keys().contains(&"httpsd:worker:w1".to_string()));
}

/// Makes a CA and a certificate for 127.0.0.1 signed by it, with the real openssl.
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect(
                "openssl is required for the TLS test: install it (apt-get install -y openssl)",
            );
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=httpsd-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "redis.key",
        "-out",
        "redis.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("write ext.cnf");
    run(&[
        "x509",
        "-req",
        "-in",
        "redis.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "redis.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_redis_with_a_private_ca() {
    let certs = tempfile::tempdir().expect("temp dir");
    make_certs(certs.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut redis = RedisServer {
        child: None,
        port,
        extra: Vec::new(),
        tls: Some(certs.path().to_path_buf()),
    };
    redis.spawn();
    let tree = Tree::new();
    tree.write("a/t.json", r#"[{"targets":["tls:1"]}]"#);
    let url = format!("rediss://127.0.0.1:{port}/0");
    let ca = certs.path().join("ca.crt").display().to_string();
    let server = server_only(tree.root(), &url, &["--redis-ca-cert", &ca, "--wait", "10"]);
    let _w = worker(
        tree.root(),
        &url,
        &["--redis-ca-cert", &ca, "--num-workers", "1"],
    );
    let r = get(&server.url("/targets/a")).await;
    assert_eq!(r.status, 200, "{}\n{}", r.body, server.log_text());
    assert_eq!(r.json()[0]["targets"][0], "tls:1");
    // Without the CA the certificate is not trusted: a clear 503, no crash.
    let untrusted = server_only(tree.root(), &url, &["--wait", "0.2"]);
    let r = get(&untrusted.url("/targets/a")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(alive(untrusted.pid()));
    // TLS files with a plain redis:// URL are refused at startup.
    let out = Command::new(crate::helpers::bin())
        .args(["server-only", &tree.root().display().to_string()])
        .args([
            "--redis-url",
            "redis://127.0.0.1:1/0",
            "--redis-ca-cert",
            &ca,
        ])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    redis.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_generators_run_on_workers_with_tracebacks_in_debug() {
    crate::helpers::require_python();
    let redis = RedisServer::start();
    let tree = Tree::new();
    tree.write(
        "py/gen.py",
        "def generate_targets(**kw):\n    return [{\"targets\": [\"py:%s\" % kw.get(\"env\", \"none\")]}]\n",
    );
    tree.write(
        "pybad/gen.py",
        "def generate_targets(**kw):\n    raise RuntimeError(\"inventory API down\")\n",
    );
    let server = server_only(tree.root(), &redis.url(), &["--wait", "20"]);
    let _w = worker(
        tree.root(),
        &redis.url(),
        &["--num-workers", "2", "--python-workers", "1"],
    );
    let r = get(&server.url("/targets/py?env=prod")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), serde_json::json!([{"targets": ["py:prod"]}]));
    let r = get(&server.url("/targets/pybad")).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json()["generators"][0]["generator"], "pybad/gen.py");
    let d = get(&server.url("/targets/pybad?debug=true")).await.json();
    let tb = d["debug_info"]["error_details"]["traceback"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        tb.contains("Traceback") && tb.contains("RuntimeError: inventory API down"),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_a_running_job_runs_it_once_more() {
    let redis = RedisServer::start();
    let tree = Tree::new();
    let counts = counts_dir();
    let runs_file = counts.path().join("r.runs");
    // Logs start and end of each run: overlapping runs would interleave the lines.
    tree.write_exec(
        "r/gen",
        &format!(
            "#!/bin/sh\necho start >> '{f}'\nn=$(grep -c start '{f}')\nsleep 1\necho end >> '{f}'\nprintf '[{{\"targets\":[\"host:%s\"]}}]' \"$n\"\n",
            f = runs_file.display()
        ),
    );
    let starts = |f: &Path| std::fs::read_to_string(f).map_or(0, |s| s.matches("start").count());
    let server = server_only(
        tree.root(),
        &redis.url(),
        &["--wait", "0.1", "--hard-reload-poll-interval", "0.05"],
    );
    let _w = worker(tree.root(), &redis.url(), &["--num-workers", "2"]);
    assert_eq!(get(&server.url("/targets/r")).await.status, 503);
    wait_for(
        Duration::from_secs(10),
        "the first run to start",
        || async { (starts(&runs_file) == 1).then_some(()) },
    )
    .await;
    // The run in progress may predate the reload: a second run is queued behind it,
    // and the job is never run twice at the same time.
    let rl = get(&server.url("/targets/r?reload=true")).await;
    assert_eq!(rl.json()["status"], "reload_complete", "{}", rl.body);
    wait_for(Duration::from_secs(10), "the rerun", || {
        let url = server.url("/targets/r");
        async move {
            let r = get(&url).await;
            (r.status == 200 && r.json()[0]["targets"][0] == "host:2").then_some(())
        }
    })
    .await;
    let log = std::fs::read_to_string(&runs_file).expect("run log");
    assert_eq!(
        log, "start\nend\nstart\nend\n",
        "two runs, one after the other"
    );
    assert_eq!(redis.scard("httpsd:pending"), 0);
    assert_eq!(redis.scard("httpsd:rerun"), 0);
    assert_eq!(redis.llen("httpsd:queue"), 0);
}
