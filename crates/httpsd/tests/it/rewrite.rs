//! Static files rewritten under load (issue 20, part 2): a file caught empty,
//! truncated or half-written keeps serving its last good content; only a file that
//! stays invalid past the grace period is an error.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::helpers::{Server, Tree, get, wait_for};

const FILES: usize = 10;

fn version(file: usize, v: u64) -> String {
    format!("[{{\"targets\":[\"f{file}:{v}\"],\"labels\":{{\"v\":\"{v}\"}}}}]\n")
}

/// One writer's life: bursts of rewrites every 100 ms, by rename for even files and
/// in place (open-truncate-write) for odd ones, with the stalls a loaded machine
/// causes: empty for 300 ms, half-written for 300 ms, then quiet so the file settles.
fn churn(path: &Path, file: usize, stop: &AtomicBool) {
    let mut v = 0u64;
    while !stop.load(Ordering::Relaxed) {
        v += 1;
        let content = version(file, v);
        if file.is_multiple_of(2) {
            let tmp = path.with_file_name(format!(".f{file}.json.tmp"));
            std::fs::write(&tmp, &content).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        } else {
            let mut f = std::fs::File::create(path).unwrap();
            match v % 7 {
                3 => std::thread::sleep(Duration::from_millis(300)),
                5 => {
                    f.write_all(&content.as_bytes()[..content.len() / 2])
                        .unwrap();
                    std::thread::sleep(Duration::from_millis(300));
                }
                _ => {}
            }
            let done = if v % 7 == 5 { content.len() / 2 } else { 0 };
            f.write_all(&content.as_bytes()[done..]).unwrap();
        }
        let pause = if v.is_multiple_of(5) { 400 } else { 100 };
        std::thread::sleep(Duration::from_millis(pause));
    }
}

/// Ten files on one path, rewritten every 100 ms both ways, four polling clients for
/// 10 s: every answer is 200 and every body is made of valid versions, in path order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churned_files_never_answer_an_error() {
    let tree = Tree::new();
    let paths: Vec<PathBuf> = (0..FILES)
        .map(|i| tree.write(&format!("churn/f{i}.json"), version(i, 0)))
        .collect();
    // The churn starts before the server, so its first loads can catch a file empty
    // or half-written (with nothing older to serve yet).
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = paths
        .into_iter()
        .enumerate()
        .map(|(i, path)| {
            let stop = stop.clone();
            std::thread::spawn(move || churn(&path, i, &stop))
        })
        .collect();
    let srv = Server::serve(tree.root(), &[]);
    let url = srv.url("/targets/churn");
    // Clients start at once: the first loads, made while files churn, count too.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut bad, mut versions) = (0usize, Vec::new(), HashSet::new());
                while !stop.load(Ordering::Relaxed) {
                    let r = get(&url).await;
                    if r.status != 200 {
                        bad.push(format!("{}: {}", r.status, r.body));
                        continue;
                    }
                    let v = r.json();
                    let groups = v.as_array().expect("a list");
                    // A file that has not settled once yet is not part of the tree, so
                    // a list may lack files (at startup), but never holds a bad one.
                    let mut last = None;
                    for g in groups {
                        let tag = g["labels"]["v"].as_str().expect("a version label");
                        let target = g["targets"][0].as_str().expect("a target");
                        let i: usize = target[1..target.find(':').unwrap()].parse().unwrap();
                        assert_eq!(target, format!("f{i}:{tag}"), "{}", r.body);
                        assert!(last < Some(i), "files out of order: {}", r.body);
                        last = Some(i);
                        versions.insert((i, tag.to_string()));
                    }
                    if groups.len() == FILES {
                        ok += 1;
                    }
                }
                (ok, bad, versions)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let (mut ok, mut bad, mut versions) = (0, Vec::new(), HashSet::new());
    for c in clients {
        let (o, b, v) = c.await.unwrap();
        ok += o;
        bad.extend(b);
        versions.extend(v);
    }
    assert!(
        bad.is_empty(),
        "{} of {} answers were not 200: {:?}",
        bad.len(),
        ok + bad.len(),
        &bad[..bad.len().min(3)]
    );
    assert!(ok > 40, "only {ok} answers held all ten files");
    // The quiet spells let files reload: the test saw more than the first versions.
    assert!(
        versions.len() > FILES,
        "only versions {versions:?} were served"
    );
}

/// A file that turns empty and stays so, or is created invalid, is reported once the
/// grace period has passed (and the good content is served until then).
#[tokio::test]
async fn a_file_that_stays_invalid_is_reported() {
    let tree = Tree::new();
    let path = tree.write("e/x.json", version(0, 1));
    tree.write("y/x.yaml", "- targets: ['y:1']\n");
    std::thread::sleep(Duration::from_millis(300));
    let srv = Server::serve(tree.root(), &[]);
    assert_eq!(get(&srv.url("/targets/e")).await.status, 200);
    std::fs::File::create(&path).unwrap();
    tree.write("y/x.yaml", "- targets: ['y:1'\n");
    tree.write("n/new.json", "[{\"targets\": [");
    for (dir, message) in [
        ("e", "is empty"),
        ("y", "invalid YAML"),
        ("n", "invalid JSON"),
    ] {
        let url = srv.url(&format!("/targets/{dir}"));
        wait_for(Duration::from_secs(15), message, || {
            let url = url.clone();
            async move {
                let r = get(&url).await;
                // Before the grace period ends the last good list is served; a new file
                // that is invalid stays out of the tree meanwhile (its directory answers
                // an empty list, as for a new file caught empty), never half-read.
                if r.status == 200 && dir == "n" {
                    assert_eq!(r.body.trim(), "[]", "an invalid new file was served");
                } else if r.status == 200 {
                    assert!(r.body.contains(":1"), "{}", r.body);
                }
                (r.status == 500 && r.body.contains(message)).then_some(())
            }
        })
        .await;
    }
}

/// A new file caught empty (created, then written after a stall) is not an error: it
/// stays out of the tree until it holds a valid list.
#[tokio::test]
async fn a_new_file_caught_empty_is_not_an_error() {
    let tree = Tree::new();
    tree.write("a/ok.json", version(0, 1));
    std::thread::sleep(Duration::from_millis(300));
    let srv = Server::serve(tree.root(), &[]);
    let url = srv.url("/targets/a");
    assert_eq!(get(&url).await.status, 200);
    let path = tree.root().join("a/new.json");
    let mut f = std::fs::File::create(&path).unwrap();
    // Longer than the settle time: the empty file is seen settled, more than once.
    let stalled = std::time::Instant::now();
    while stalled.elapsed() < Duration::from_millis(800) {
        let r = get(&url).await;
        assert_eq!(
            r.status, 200,
            "a new empty file failed its path: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.write_all(version(1, 1).as_bytes()).unwrap();
    drop(f);
    wait_for(Duration::from_secs(15), "the new file served", || {
        let url = url.clone();
        async move {
            let r = get(&url).await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body.contains("f1:1").then_some(())
        }
    })
    .await;
}
