//! The archiver against real Python workers: totals preserved and readable by Python,
//! crash safety (an abort at every step, kill -9 at random points), pid reuse, and refusal
//! when the writers' PID namespace is not visible.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::helpers::*;

/// Python workers that stay alive (so the namespace is visible) until dropped.
struct Holder {
    child: Child,
    pids: Vec<i32>,
}

impl Holder {
    fn start(dir: &Path, n: usize) -> Holder {
        require_python();
        let mut child = Command::new("python3")
            .arg(py_script("workers.py"))
            .args([dir.to_str().expect("utf-8"), "hold", &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn holder");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut pids = Vec::new();
        while pids.len() < n {
            let mut l = String::new();
            out.read_line(&mut l).expect("read pid");
            if l.is_empty() {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(
                    &mut child.stderr.take().expect("stderr"),
                    &mut err,
                );
                panic!("holder exited early: {err}");
            }
            pids.extend(l.split_whitespace().map(|p| p.parse::<i32>().expect("pid")));
        }
        Holder { child, pids }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A directory with `dead` exited workers (mark_process_dead called, like gunicorn) and
/// `alive` sleeping ones.
fn churned_dir(dead: usize, alive: usize) -> (tempfile::TempDir, Vec<i32>, Option<Holder>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_py(
        "workers.py",
        &[
            dir.path().to_str().expect("utf-8"),
            "nasty",
            &dead.to_string(),
            "mark-dead",
        ],
    );
    let dead_pids = out
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect();
    let holder = (alive > 0).then(|| Holder::start(dir.path(), alive));
    (dir, dead_pids, holder)
}

pub(crate) fn db_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".db"))
        .collect();
    v.sort();
    v
}

/// True when no mergeable or live file of a dead pid is left and no pass is half done.
pub(crate) fn fully_archived(dir: &Path, dead: &[i32]) -> bool {
    let files = db_files(dir);
    let staged = std::fs::read_dir(dir.join(".mpe-staging"))
        .map(|r| r.count())
        .unwrap_or(0);
    staged == 0
        && !dir.join(".mpe-journal").exists()
        && dead.iter().all(|p| {
            !files
                .iter()
                .any(|f| f.ends_with(&format!("_{p}.db")) && !f.starts_with("gauge_all_"))
        })
}

pub(crate) fn archive_args() -> Vec<&'static str> {
    vec!["--archive", "--archive-interval", "0.02"]
}

#[test]
fn archiving_preserves_totals_monotonic_and_python_reads_the_archives() {
    let (dir, dead, _holder) = churned_dir(30, 2);
    let d = dir.path();
    let before = oracle(d, "text");
    let files_before = db_files(d).len();
    let exp = Exporter::start(
        d,
        &[
            "--archive",
            "--archive-interval",
            "0.02",
            "--archive-max-pids",
            "4",
        ],
    );
    let series = "req_total{code=\"200\",path=\"/ü\\\"x\"}";
    let mut last = 0.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fully_archived(d, &dead) {
        let text = exp.scrape();
        let v = sample_value(&text, series).expect("series present");
        assert!(
            v >= last,
            "counter went backwards during archiving: {last} -> {v}"
        );
        last = v;
        assert_same_exposition(&before, &strip_own(&text));
        assert!(Instant::now() < deadline, "archiving did not finish");
    }
    let after = strip_own(&exp.scrape());
    assert_same_exposition(&before, &after);
    // The upstream collector reads our archive files and agrees.
    assert_same_exposition(&before, &oracle(d, "text"));
    let files = db_files(d);
    assert!(
        files.contains(&"counter_archive.db".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"gauge_mostrecent_archive.db".to_string()),
        "{files:?}"
    );
    assert!(
        files.len() < files_before / 2,
        "{} -> {}",
        files_before,
        files.len()
    );
}

#[test]
fn drop_dead_all_gauges_removes_only_dead_pids_all_series() {
    let (dir, dead, holder) = churned_dir(5, 1);
    let holder = holder.expect("holder");
    let d = dir.path();
    let exp = Exporter::start(
        d,
        &[
            "--archive",
            "--archive-interval",
            "0.02",
            "--drop-dead-all-gauges",
        ],
    );
    assert!(wait_until(Duration::from_secs(20), || fully_archived(
        d, &dead
    ) && !db_files(d)
        .iter()
        .any(|f| dead.iter().any(|p| f.ends_with(&format!("_{p}.db"))))));
    let text = exp.scrape();
    for p in &dead {
        assert!(
            !text.contains(&format!("pid=\"{p}\"")),
            "dead pid {p} still exported"
        );
    }
    let alive = holder.pids[0];
    assert!(
        text.contains(&format!("held_all{{pid=\"{alive}\"}} 0.0")),
        "{text}"
    );
    assert_same_exposition(&oracle(d, "text"), &strip_own(&text));
}

#[test]
fn refuses_to_touch_a_directory_from_another_pid_namespace() {
    // Every writer is gone (as seen from another namespace), plus files whose pids exist
    // here but are unrelated processes: pid 1, and a `sleep` whose maps we can read.
    let (dir, _dead, _) = churned_dir(4, 0);
    let d = dir.path();
    let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
    let src = d.join(
        db_files(d)
            .into_iter()
            .find(|f| f.starts_with("counter_"))
            .expect("counter"),
    );
    std::fs::copy(&src, d.join("counter_1.db")).expect("copy");
    std::fs::copy(&src, d.join(format!("counter_{}.db", sleeper.id()))).expect("copy");
    let snapshot = |d: &Path| -> BTreeMap<String, Vec<u8>> {
        db_files(d)
            .into_iter()
            .map(|f| (f.clone(), std::fs::read(d.join(&f)).expect("read")))
            .collect()
    };
    let before = snapshot(d);
    let exp = Exporter::start(d, &archive_args());
    assert!(wait_until(Duration::from_secs(10), || {
        sample_value(&exp.scrape(), "multiproc_exporter_archive_refusals_total").unwrap_or(0.0)
            >= 5.0
    }));
    let text = exp.scrape();
    assert_eq!(
        sample_value(&text, "multiproc_exporter_archived_files_total"),
        Some(0.0)
    );
    assert_eq!(
        sample_value(&text, "multiproc_exporter_namespace_visible"),
        Some(0.0)
    );
    assert_eq!(snapshot(d), before, "the directory must be left untouched");
    assert!(!d.join(".mpe-staging").exists());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

/// Every crash point of a pass (`MPE_ARCHIVE_CRASH_AT`), in pass order.
pub(crate) const CRASH_POINTS: [&str; 6] = [
    "after-stage",
    "after-temp",
    "after-journal",
    "mid-publish",
    "after-publish",
    "after-delete",
];

/// Runs an archiving exporter on `d` that aborts at crash point `point`.
pub(crate) fn crash_at(d: &Path, point: &str) {
    let mut child = Command::new(exporter_bin())
        .arg(d)
        .args(["--listen", &free_addr().to_string()])
        .args(archive_args())
        .env("MPE_ARCHIVE_CRASH_AT", point)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut status = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            status = child.try_wait().expect("wait");
            status.is_some()
        }),
        "exporter did not reach crash point {point}"
    );
    assert!(
        !status.expect("status").success(),
        "{point}: should have aborted"
    );
}

pub(crate) fn run_until_archived(d: &Path, dead: &[i32]) -> Exporter {
    let exp = Exporter::start(d, &archive_args());
    assert!(
        wait_until(Duration::from_secs(30), || fully_archived(d, dead)),
        "archiving did not finish: {:?}",
        db_files(d)
    );
    exp
}

#[test]
fn a_crash_at_every_step_of_a_pass_neither_double_counts_nor_loses() {
    let (dir, dead, _holder) = churned_dir(6, 1);
    let d = dir.path();
    let before = oracle(d, "text");
    for point in CRASH_POINTS {
        // Fresh dead files for every round: run more workers that exit.
        let out = run_py(
            "workers.py",
            &[d.to_str().expect("utf-8"), "nasty", "2", "mark-dead"],
        );
        let mut dead_now = dead.clone();
        dead_now.extend(
            out.split_whitespace()
                .map(|p| p.parse::<i32>().expect("pid")),
        );
        let expected = oracle(d, "text");
        crash_at(d, point);
        let exp = run_until_archived(d, &dead_now);
        assert_same_exposition(&expected, &strip_own(&exp.scrape()));
        assert_same_exposition(&expected, &oracle(d, "text"));
    }
    assert_ne!(
        before,
        oracle(d, "text"),
        "later workers must have added counts"
    );
}

#[test]
fn kill_9_at_random_points_never_double_counts_nor_loses() {
    let (dir, dead, _holder) = churned_dir(40, 1);
    let d = dir.path();
    let expected = oracle(d, "text");
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|t| t.as_nanos() as u64)
        .unwrap_or(1);
    eprintln!("kill -9 seed {seed}");
    for _ in 0..12 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis(20 + (seed >> 33) % 200);
        let mut child = Command::new(exporter_bin())
            .arg(d)
            .args([
                "--listen",
                &free_addr().to_string(),
                "--archive",
                "--archive-interval",
                "0.005",
            ])
            .args(["--archive-max-pids", "2"])
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(delay);
        child.kill().expect("kill -9");
        let _ = child.wait();
        // Whatever state the kill left, Python and we agree after recovery below.
    }
    let exp = run_until_archived(d, &dead);
    assert_same_exposition(&expected, &strip_own(&exp.scrape()));
    assert_same_exposition(&expected, &oracle(d, "text"));
}

#[test]
fn a_reused_pid_starts_from_zero_and_nothing_it_writes_is_lost() {
    let (dir, dead, _holder) = churned_dir(3, 1);
    let d = dir.path();
    let series = "req_total{code=\"200\",path=\"/ü\\\"x\"}";
    let exp = run_until_archived(d, &dead);
    let archived = sample_value(&exp.scrape(), series).expect("series");
    drop(exp);
    // A new process gets the first dead pid again and writes under it.
    let reused = dead[0];
    run_py(
        "workers.py",
        &[d.to_str().expect("utf-8"), "reuse", &reused.to_string()],
    );
    let text = oracle(d, "text");
    assert_eq!(
        sample_value(&text, series),
        Some(archived + 1000.0),
        "{text}"
    );
    assert_eq!(sample_value(&text, "reused_total"), Some(7.0));
    let exp = run_until_archived(d, &dead);
    let text = exp.scrape();
    assert_eq!(sample_value(&text, series), Some(archived + 1000.0));
    assert_eq!(sample_value(&text, "reused_total"), Some(7.0));
}
