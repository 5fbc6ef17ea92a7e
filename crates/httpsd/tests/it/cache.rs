//! The cache of dynamic generator runs, through the real binary with real executable
//! and Python generators (each behaviour test runs with both): single-flight, cache_time, timeouts, failures, the stale bound, first
//! requests, persistence across restarts, `--cache-type None`, bounded entries,
//! proactive refresh and the strict parsing of every option.
//!
//! Each generator appends a line to a counter file outside the tree per run, so the
//! tests count real runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use crate::helpers::{Server, Tree, bin, client, get, wait_for};

/// A counter file outside the target tree (writing it must not touch the tree).
struct Counter {
    dir: tempfile::TempDir,
}

impl Counter {
    fn new() -> Counter {
        Counter {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("runs")
    }

    /// A file next to the counter (control flags, data).
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn runs(&self) -> usize {
        std::fs::read_to_string(self.path())
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

/// The two kinds of dynamic generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An executable (`/bin/sh` script).
    Exec,
    /// A `.py` file run by the Python worker pool.
    Python,
}

impl Kind {
    /// The error kind of a generator that fails on purpose.
    fn failure_kind(self) -> &'static str {
        match self {
            Kind::Exec => "exit",
            Kind::Python => "exception",
        }
    }
}

/// What a test generator does on each run, after counting it.
enum Does<'a> {
    /// Sleeps this many seconds, then returns `run:<n>`.
    Sleep(&'a str),
    /// Fails on its first run only, then returns `ok:1`.
    FailFirst,
    /// Fails while this file exists, else returns `good:1`.
    FailIf(&'a Path),
    /// Returns `<content of this file>:1`.
    Echo(&'a Path),
}

/// Writes a generator of `kind` into directory `dir` of the tree; returns its path
/// relative to the root (the `generator` label).
fn write_gen(tree: &Tree, kind: Kind, dir: &str, counter: &Counter, does: Does) -> String {
    let c = counter.path();
    match kind {
        Kind::Exec => {
            let c = c.display();
            let body = match does {
                Does::Sleep(s) => {
                    format!("sleep {s}\necho \"[{{\\\"targets\\\":[\\\"run:$n\\\"]}}]\"\n")
                }
                Does::FailFirst => "if [ \"$n\" = 1 ]; then echo first run fails >&2; exit 1; fi\necho '[{\"targets\":[\"ok:1\"]}]'\n".to_string(),
                Does::FailIf(f) => format!(
                    "if [ -e '{}' ]; then echo backend down >&2; exit 1; fi\necho '[{{\"targets\":[\"good:1\"]}}]'\n",
                    f.display()
                ),
                Does::Echo(d) => format!(
                    "echo \"[{{\\\"targets\\\":[\\\"$(cat '{}'):1\\\"]}}]\"\n",
                    d.display()
                ),
            };
            let rel = format!("{dir}/gen");
            tree.write_exec(
                &rel,
                &format!("#!/bin/sh\necho run >> '{c}'\nn=$(wc -l < '{c}' | tr -d ' ')\n{body}"),
            );
            rel
        }
        Kind::Python => {
            let body = match does {
                Does::Sleep(s) => {
                    format!("    time.sleep({s})\n    return [{{'targets': ['run:%d' % n]}}]\n")
                }
                Does::FailFirst => "    if n == 1:\n        raise RuntimeError('first run fails')\n    return [{'targets': ['ok:1']}]\n".to_string(),
                Does::FailIf(f) => format!(
                    "    if os.path.exists({:?}):\n        raise RuntimeError('backend down')\n    return [{{'targets': ['good:1']}}]\n",
                    f.display().to_string()
                ),
                Does::Echo(d) => format!(
                    "    with open({:?}) as f:\n        return [{{'targets': [f.read().strip() + ':1']}}]\n",
                    d.display().to_string()
                ),
            };
            let rel = format!("{dir}/gen.py");
            tree.write(
                &rel,
                format!(
                    "import os, time\n\ndef generate_targets(**params):\n    with open({c:?}, 'a') as f:\n        f.write('run\\n')\n    with open({c:?}) as f:\n        n = len(f.readlines())\n{body}",
                    c = c.display().to_string()
                ),
            );
            rel
        }
    }
}

/// Runs a test body once with an executable and once with a Python generator.
macro_rules! both_kinds {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn exec() {
                super::$name(super::Kind::Exec).await
            }

            #[tokio::test]
            async fn python() {
                crate::helpers::require_python();
                super::$name(super::Kind::Python).await
            }
        }
    };
}

fn target_of(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v[0]["targets"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no target in {body}"))
        .to_string()
}

/// Sum of the samples of `name` whose labels include every `labels` pair.
async fn metric(srv: &Server, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = get(&srv.url("/metrics")).await.body;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next().is_some_and(|n| n == name))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn get_many(url: &str, n: usize) -> Vec<(u16, String)> {
    let c = client();
    let futs = (0..n).map(|_| {
        let c = c.clone();
        async move {
            let r = c.get(url).send().await.expect("request");
            let s = r.status().as_u16();
            (s, r.text().await.expect("body"))
        }
    });
    futures::future::join_all(futs).await
}

both_kinds!(concurrent_requests_share_one_run_then_cache_then_one_refresh);
async fn concurrent_requests_share_one_run_then_cache_then_one_refresh(kind: Kind) {
    let counter = Counter::new();
    let tree = Tree::new();
    let rel = write_gen(&tree, kind, "slow", &counter, Does::Sleep("0.5"));
    let srv = Server::serve(
        tree.root(),
        &[
            "--cache-opt",
            "cache_time=2",
            "--cache-refresh-interval",
            "600",
        ],
    );
    let url = srv.url("/targets/slow");
    // 50 concurrent requests for a slow generator: one run, 50 identical 200s.
    let all = get_many(&url, 50).await;
    let stored_at = Instant::now();
    assert!(
        all.iter()
            .all(|(s, b)| *s == 200 && target_of(b) == "run:1"),
        "{all:?}"
    );
    assert_eq!(counter.runs(), 1);
    // A second round within cache_time runs nothing.
    let all = get_many(&url, 50).await;
    assert!(
        all.iter()
            .all(|(s, b)| *s == 200 && target_of(b) == "run:1")
    );
    assert_eq!(counter.runs(), 1);
    // Served fresh from the cache, not as stale: the second round was within cache_time.
    assert_eq!(
        metric(&srv, "httpsd_cache_lookups_total", &[("result", "hit")]).await,
        50.0
    );
    // After cache_time: the stale value at once, and exactly one refresh behind it.
    tokio::time::sleep(Duration::from_millis(2200).saturating_sub(stored_at.elapsed())).await;
    // Served at once: every answer is the old run's, none waited for the refresh
    // (and each lookup is counted as stale, below).
    let all = get_many(&url, 50).await;
    assert!(
        all.iter()
            .all(|(s, b)| *s == 200 && target_of(b) == "run:1")
    );
    wait_for(Duration::from_secs(5), "the refresh", || async {
        (target_of(&get(&url).await.body) == "run:2").then_some(())
    })
    .await;
    assert_eq!(counter.runs(), 2);
    assert!(metric(&srv, "httpsd_cache_lookups_total", &[("result", "stale")]).await >= 50.0);
    assert_eq!(
        metric(
            &srv,
            "httpsd_cache_refreshes_total",
            &[
                ("generator", rel.as_str()),
                ("trigger", "stale"),
                ("status", "success")
            ]
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(&srv, "httpsd_cache_lookups_total", &[("result", "miss")]).await,
        50.0
    );
}

both_kinds!(timeout_answers_500_and_the_run_serves_the_next_caller);
async fn timeout_answers_500_and_the_run_serves_the_next_caller(kind: Kind) {
    let counter = Counter::new();
    let tree = Tree::new();
    let rel = write_gen(&tree, kind, "slow", &counter, Does::Sleep("2"));
    let srv = Server::serve(tree.root(), &["--cache-opt", "timeout=1"]);
    let url = srv.url("/targets/slow");
    let started = Instant::now();
    let r = get(&url).await;
    let waited = started.elapsed();
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json()["generators"][0]["kind"], "timeout", "{}", r.body);
    // Answered at the caller timeout (1 s), not at the end of the 2 s run: a run that
    // had ended would have answered 200, not "timeout".
    assert!(
        waited >= Duration::from_millis(950),
        "answered after {waited:?}"
    );
    // The run went on: once it has finished, the next caller gets its result at once.
    wait_for(Duration::from_secs(5), "the run to finish", || async {
        (counter.runs() == 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2300).saturating_sub(started.elapsed())).await;
    let hits = metric(&srv, "httpsd_cache_lookups_total", &[("result", "hit")]).await;
    let r = get(&url).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(target_of(&r.body), "run:1");
    // At once: a cache hit, without a run.
    assert_eq!(
        metric(&srv, "httpsd_cache_lookups_total", &[("result", "hit")]).await,
        hits + 1.0
    );
    assert_eq!(counter.runs(), 1);
    assert_eq!(
        metric(
            &srv,
            "httpsd_generator_timeouts_total",
            &[("generator", rel.as_str())]
        )
        .await,
        1.0
    );
}

both_kinds!(exception_time_holds_a_failure_then_retries);
async fn exception_time_holds_a_failure_then_retries(kind: Kind) {
    let counter = Counter::new();
    let tree = Tree::new();
    write_gen(&tree, kind, "flaky", &counter, Does::FailFirst);
    let srv = Server::serve(tree.root(), &["--cache-opt", "cache_exception_time=1.5"]);
    let url = srv.url("/targets/flaky");
    let r = get(&url).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json()["generators"][0]["kind"], kind.failure_kind());
    let r = get(&url).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(counter.runs(), 1, "the failure was not held");
    // The hold counts from the end of the failed run, which a loaded machine delays:
    // poll for the retry instead of sleeping a fixed time. Requests during the hold
    // are answered from the held failure without running the generator.
    crate::helpers::wait_for(Duration::from_secs(6), "the retry after the hold", || {
        let url = url.clone();
        async move { (get(&url).await.status == 200).then_some(()) }
    })
    .await;
    assert_eq!(counter.runs(), 2, "exactly one retry after the hold");
    assert!(
        metric(
            &srv,
            "httpsd_cache_lookups_total",
            &[("result", "cached_failure")]
        )
        .await
            >= 1.0
    );
}

both_kinds!(stale_result_is_served_while_refreshes_fail_until_max_stale);
async fn stale_result_is_served_while_refreshes_fail_until_max_stale(kind: Kind) {
    let counter = Counter::new();
    let tree = Tree::new();
    let fail = counter.file("fail");
    write_gen(&tree, kind, "flip", &counter, Does::FailIf(&fail));
    let srv = Server::serve(
        tree.root(),
        &[
            "--cache-opt",
            "cache_time=1",
            "--max-stale",
            "1.5",
            "--cache-refresh-interval",
            "600",
        ],
    );
    let url = srv.url("/targets/flip");
    let r = get(&url).await;
    let stored = Instant::now();
    assert_eq!(r.status, 200, "{}", r.body);
    std::fs::write(&fail, "").unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Stale: served, while a refresh runs and fails.
    let r = get(&url).await;
    assert_eq!((r.status, target_of(&r.body).as_str()), (200, "good:1"));
    wait_for(Duration::from_secs(5), "the failed refresh", || async {
        (metric(&srv, "httpsd_cache_refreshes_total", &[("status", "fail")]).await >= 1.0)
            .then_some(())
    })
    .await;
    let r = get(&url).await;
    assert_eq!((r.status, target_of(&r.body).as_str()), (200, "good:1"));
    assert!(
        srv.log_text()
            .contains("refresh failed; serving the last good result"),
        "{}",
        srv.log_text()
    );
    // Past cache_time + max-stale (2.5 s): the failing path answers 500.
    tokio::time::sleep(Duration::from_millis(2600).saturating_sub(stored.elapsed())).await;
    let r = get(&url).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.json()["generators"][0]["kind"], kind.failure_kind());
    // Recovery.
    std::fs::remove_file(&fail).unwrap();
    assert_eq!(get(&url).await.status, 200);
}

both_kinds!(first_request_of_a_new_path_waits_and_answers_200);
async fn first_request_of_a_new_path_waits_and_answers_200(kind: Kind) {
    let counter = Counter::new();
    let tree = Tree::new();
    let rel = write_gen(&tree, kind, "slow", &counter, Does::Sleep("0.5"));
    let srv = Server::serve(tree.root(), &[]);
    let started = Instant::now();
    let r = get(&srv.url("/targets/slow?cluster=a")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(started.elapsed() >= Duration::from_millis(500));
    // A path created while serving: its first answer that is not 404 is a 200.
    write_gen(&tree, kind, "later", &counter, Does::Sleep("0.3"));
    let first = wait_for(Duration::from_secs(10), "the new path", || async {
        let r = get(&srv.url("/targets/later")).await;
        (r.status != 404).then_some(r)
    })
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    // Parameter order does not make a new entry.
    let runs = counter.runs();
    let a = get(&srv.url("/targets/slow?x=1&y=2")).await;
    let b = get(&srv.url("/targets/slow?y=2&x=1")).await;
    assert_eq!(a.body, b.body);
    assert_eq!(counter.runs(), runs + 1);
    // Editing the script is picked up at once, not after cache_time.
    let edited = match kind {
        Kind::Exec => "#!/bin/sh\necho '[{\"targets\":[\"edited:1\"]}]'\n",
        Kind::Python => "def generate_targets(**params):\n    return [{'targets': ['edited:1']}]\n",
    };
    std::fs::write(tree.root().join(&rel), edited).unwrap();
    wait_for(Duration::from_secs(10), "the edited script", || async {
        let r = get(&srv.url("/targets/slow?cluster=a")).await;
        (r.status == 200 && target_of(&r.body) == "edited:1").then_some(())
    })
    .await;
}

fn persisted_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default()
}

both_kinds!(restart_with_cache_dir_answers_from_disk_and_ignores_corrupt_files);
async fn restart_with_cache_dir_answers_from_disk_and_ignores_corrupt_files(kind: Kind) {
    let counter = Counter::new();
    let data = counter.file("data");
    std::fs::write(&data, "v1").unwrap();
    let tree = Tree::new();
    write_gen(&tree, kind, "disk", &counter, Does::Echo(&data));
    let cache_dir = tempfile::tempdir().unwrap();
    let dir = cache_dir.path().join("sub");
    let dir_s = dir.display().to_string();
    let args = [
        "--cache-dir",
        dir_s.as_str(),
        "--cache-opt",
        "cache_time=60",
    ];
    let mut srv = Server::serve(tree.root(), &args);
    let r = get(&srv.url("/targets/disk?c=1")).await;
    assert_eq!(target_of(&r.body), "v1:1");
    wait_for(Duration::from_secs(5), "the persisted file", || async {
        (!persisted_files(&dir).is_empty()).then_some(())
    })
    .await;
    assert!(srv.terminate().success());
    // The data behind the generator changes; a restarted server answers from disk
    // before any run (the generator is unchanged, so its result is still valid).
    std::fs::write(&data, "v2").unwrap();
    let mut srv = Server::serve(tree.root(), &args);
    let r = get(&srv.url("/targets/disk?c=1")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(target_of(&r.body), "v1:1");
    assert_eq!(counter.runs(), 1);
    assert!(
        srv.log_text()
            .contains("loaded persisted generator results")
    );
    assert!(srv.terminate().success());
    // A truncated file is ignored with a warning; the request runs the generator.
    let files = persisted_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let bytes = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(dir.join("garbage.json"), b"\x00\x01 not json").unwrap();
    let srv = Server::serve(tree.root(), &args);
    let log = srv.log_text();
    assert!(
        log.matches("ignoring an unreadable persisted result")
            .count()
            >= 2,
        "{log}"
    );
    let r = get(&srv.url("/targets/disk?c=1")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(target_of(&r.body), "v2:1");
    assert_eq!(counter.runs(), 2);
}

both_kinds!(cache_type_none_runs_every_request_but_still_single_flight);
async fn cache_type_none_runs_every_request_but_still_single_flight(kind: Kind) {
    let counter = Counter::new();
    let tree = Tree::new();
    write_gen(&tree, kind, "slow", &counter, Does::Sleep("0.3"));
    let srv = Server::serve(tree.root(), &["--cache-type", "None"]);
    let url = srv.url("/targets/slow");
    for i in 1..=3 {
        let r = get(&url).await;
        assert_eq!(target_of(&r.body), format!("run:{i}"));
    }
    let all = get_many(&url, 20).await;
    assert!(
        all.iter()
            .all(|(s, b)| *s == 200 && target_of(b) == "run:4"),
        "{all:?}"
    );
    assert_eq!(counter.runs(), 4);
}

#[tokio::test]
async fn random_query_strings_leave_memory_bounded() {
    // Python: a run is a message to a warm worker, far cheaper than a process.
    crate::helpers::require_python();
    let tree = Tree::new();
    tree.write(
        "fast/gen.py",
        "def generate_targets(**params):\n    return [{'targets': ['a:1']}]\n",
    );
    let srv = Server::serve(tree.root(), &["--cache-max-entries", "100"]);
    let c = client();
    let send = |range: std::ops::Range<usize>| {
        let urls: Vec<String> = range
            .map(|i| srv.url(&format!("/targets/fast?r={i}&pad={}", "x".repeat(200))))
            .collect();
        let c = c.clone();
        async move {
            futures::stream::iter(urls)
                .map(|u| {
                    let c = c.clone();
                    async move { c.get(&u).send().await.expect("request").status().as_u16() }
                })
                .buffer_unordered(8)
                .for_each(|s| async move { assert_eq!(s, 200) })
                .await;
        }
    };
    // Warm up, then 10,000 distinct query strings.
    send(0..1000).await;
    let rss_before = metric(&srv, "process_resident_memory_bytes", &[]).await;
    assert!(rss_before > 1e6, "no process_resident_memory_bytes");
    send(1000..10_000).await;
    let rss_after = metric(&srv, "process_resident_memory_bytes", &[]).await;
    let entries = metric(&srv, "httpsd_cache_entries", &[]).await;
    assert!(entries <= 100.0 && entries > 0.0, "{entries} entries");
    let evicted = metric(
        &srv,
        "httpsd_cache_evictions_total",
        &[("reason", "capacity")],
    )
    .await;
    assert!(evicted >= 9_900.0, "{evicted} evicted");
    assert!(
        rss_after - rss_before < 20e6,
        "memory grew from {rss_before} to {rss_after} bytes"
    );
}

#[tokio::test]
async fn proactive_refresh_keeps_a_steady_poller_fresh() {
    let counter = Counter::new();
    let tree = Tree::new();
    write_gen(&tree, Kind::Exec, "slow", &counter, Does::Sleep("0.1"));
    let srv = Server::serve(
        tree.root(),
        &[
            "--cache-opt",
            "cache_time=2",
            "--cache-refresh-interval",
            "0.5",
        ],
    );
    let url = srv.url("/targets/slow");
    assert_eq!(get(&url).await.status, 200);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = get(&url).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        metric(&srv, "httpsd_cache_lookups_total", &[("result", "stale")]).await,
        0.0
    );
    assert_eq!(
        metric(&srv, "httpsd_cache_lookups_total", &[("result", "miss")]).await,
        1.0
    );
    let proactive = metric(
        &srv,
        "httpsd_cache_refreshes_total",
        &[("trigger", "proactive")],
    )
    .await;
    let runs = counter.runs();
    assert!(
        (3..=6).contains(&runs),
        "{runs} runs in ~6 s with cache_time=2"
    );
    assert_eq!(proactive as usize, runs - 1);
}

fn start_error(args: &[&str]) -> (i32, String) {
    let tree = Tree::new();
    let out = Command::new(bin())
        .arg("serve")
        .arg(tree.root())
        .args(["-p", "0"])
        .args(args)
        .output()
        .expect("run httpsd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn every_cache_opt_key_is_accepted_and_takes_effect() {
    let counter = Counter::new();
    let tree = Tree::new();
    write_gen(&tree, Kind::Exec, "slow", &counter, Does::Sleep("0"));
    let srv = Server::serve(
        tree.root(),
        &[
            "--cache-type",
            "Timeout",
            "--cache-opt",
            "timeout=5",
            "--cache-opt",
            "cache_time=30",
            "--cache-opt",
            "cache_exception_time=0",
            "--cache-opt",
            "name=my_cache",
            "--cache-opt",
            "garbage_collection_count=0",
            "--cache-opt",
            "garbage_collection_interval=1",
            "--cache-opt",
            "copy_response=False",
            "-m",
            "300",
            "--update-threads",
            "2",
            "--max-stale",
            "60",
        ],
    );
    assert!(!srv.log_text().contains("ignored"), "{}", srv.log_text());
    let url = srv.url("/targets/slow");
    assert_eq!(get(&url).await.body, get(&url).await.body);
    assert_eq!(counter.runs(), 1);
    assert_eq!(
        metric(
            &srv,
            "httpsd_garbage_collection_cache_count",
            &[("name", "my_cache")]
        )
        .await,
        1.0
    );
    let r = get(&srv.url("/targets/slow?debug=true")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["generators"][0]["source"], json!("cache"));
    // The debug view says how the cache answered and how old the result is.
    let cache = &r.json()["generators"][0]["cache"];
    assert_eq!(cache["served"], json!("fresh"), "{}", r.body);
    assert!(
        cache["age_seconds"].as_f64().is_some_and(|a| a >= 0.0),
        "{}",
        r.body
    );
}

#[test]
fn bad_cache_options_are_startup_errors_naming_the_option() {
    for (args, needle) in [
        (&["--cache-opt", "timeout=abc"][..], "timeout"),
        (&["--cache-opt", "timeout=0"], "timeout"),
        (&["--cache-opt", "cache_time=-1"], "cache_time"),
        (&["--cache-opt", "cache_time=soon"], "cache_time"),
        (
            &["--cache-opt", "cache_exception_time=x"],
            "cache_exception_time",
        ),
        (&["--cache-opt", "name="], "name"),
        (
            &["--cache-opt", "garbage_collection_count=1.5"],
            "garbage_collection_count",
        ),
        (
            &["--cache-opt", "garbage_collection_interval=0"],
            "garbage_collection_interval",
        ),
        (&["--cache-opt", "copy_response=perhaps"], "copy_response"),
        (&["--cache-opt", "colour=blue"], "unknown key"),
        (&["--cache-opt", "timeout"], "KEY=VALUE"),
        (&["--cache-type", "Redis"], "--cache-type"),
        (&["-m", "0"], "--cache-seconds"),
        (
            &["--cache-refresh-interval", "0"],
            "--cache-refresh-interval",
        ),
        (&["--update-threads", "0"], "--update-threads"),
        (&["--max-stale", "x"], "--max-stale"),
        (&["--cache-max-entries", "0"], "--cache-max-entries"),
    ] {
        let (code, stderr) = start_error(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        if args[0] == "--cache-opt" {
            assert!(stderr.contains("--cache-opt"), "{args:?}: {stderr}");
        }
    }
}

#[test]
fn unusable_cache_dir_is_a_startup_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let path = file.path().display().to_string();
    let (code, stderr) = start_error(&["--cache-dir", &path]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("cannot use --cache-dir"), "{stderr}");
    assert!(stderr.contains(&path), "{stderr}");
}
