//! The inotify watch of the directory, with the real kernel watch (no hook): dead writers'
//! files that nothing touches are not even stat-ed on a warm scrape, and such a file is
//! re-read on the next scrape when it is re-created under the same name (pid reuse) or
//! re-opened and written in place through mmap by a new process with the same pid.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use multiproc_exporter::collector::Collector;
use multiproc_exporter::expose::{Escaping, Format, encode};
use multiproc_exporter::format::{python_key, write_file};
use multiproc_exporter::scan::LivenessProbe;

use crate::helpers::{py_script, require_python};

fn counter(path: &Path, values: &[f64]) {
    let keys: Vec<String> = (0..values.len())
        .map(|i| python_key("c", "c_total", &[("i", &i.to_string())], "Counter."))
        .collect();
    write_file(
        path,
        keys.iter()
            .zip(values)
            .map(|(k, v)| (k.as_bytes(), *v, 0.0)),
    )
    .unwrap();
}

/// A liveness probe that says alive exactly for the pids in the returned set.
fn declared_liveness() -> (Arc<Mutex<HashSet<i32>>>, LivenessProbe) {
    let alive: Arc<Mutex<HashSet<i32>>> = Arc::default();
    let a = alive.clone();
    (alive, Arc::new(move |pid| a.lock().unwrap().contains(&pid)))
}

/// A directory of counter files, one per pid, each holding `values`, with a probe that
/// declares alive exactly the pids in the returned set (none yet).
fn counters(
    pids: std::ops::Range<i32>,
    values: &[f64],
) -> (tempfile::TempDir, Arc<Mutex<HashSet<i32>>>, LivenessProbe) {
    require_python();
    let dir = tempfile::tempdir().unwrap();
    let (alive, probe) = declared_liveness();
    for pid in pids {
        counter(&dir.path().join(format!("counter_{pid}.db")), values);
    }
    (dir, alive, probe)
}

/// Asserts that a scan kept all `files` settled files without a stat or a read (the
/// inotify watch named none of them).
fn assert_settled_unstated(s: &multiproc_exporter::scan::ScanStats, files: usize) {
    assert_eq!(
        (s.unchecked, s.bytes_read),
        (files, 0),
        "settled files were stat-ed or read: is the inotify watch active? {s:?}"
    );
}

fn body(c: &mut Collector) -> (String, multiproc_exporter::scan::ScanStats) {
    let got = c.collect().unwrap();
    (
        encode(&got.families, &Format::Text(Escaping::Underscores)),
        got.scan,
    )
}

#[test]
fn touched_dead_files_are_reread() {
    let (dir, alive, probe) = counters(100..110, &[1.0, 2.0]);
    let mut c = Collector::new(dir.path(), 2);
    c.set_liveness(probe.clone());
    // A cold scan opens every file, which names them all in the next warm scrape's events.
    let cold = |c: &mut Collector| {
        let mut fresh = Collector::new(dir.path(), 2);
        fresh.set_liveness(probe.clone());
        let want = body(&mut fresh).0;
        let (got, stats) = body(c);
        assert_eq!(got, want, "warm scrape differs from a cold scan");
        stats
    };
    // Parse, then stat once more (the parse's own opens are events), then settled.
    assert_eq!(cold(&mut c).parsed, 10);
    body(&mut c);
    assert_settled_unstated(&body(&mut c).1, 10);

    // Re-created under the same name (written aside, renamed over) while the pid still
    // reads as dead: only the rename names it.
    let tmp = dir.path().join(".tmp");
    counter(&tmp, &[5.0, 6.0, 7.0]);
    std::fs::rename(&tmp, dir.path().join("counter_103.db")).unwrap();
    let (text, s) = body(&mut c);
    assert_eq!((s.parsed, s.unchecked), (1, 9), "{s:?}");
    assert!(text.contains("c_total{i=\"2\"} 7.0"), "{text}");
    cold(&mut c);

    // A new process with pid 105 re-opens its file and writes through mmap (no size
    // change, no write(2)): only the open names it.
    body(&mut c);
    assert_eq!(body(&mut c).1.unchecked, 10);
    alive.lock().unwrap().insert(105);
    let out = std::process::Command::new("python3")
        .arg(py_script("mmap_write.py"))
        .arg(dir.path().join("counter_105.db"))
        .arg("40")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (text, s) = body(&mut c);
    // Re-read (from scratch when the mmap write changed its ctime).
    assert_eq!((s.parsed + s.refreshed, s.unchecked), (1, 9), "{s:?}");
    assert!(text.contains("c_total{i=\"0\"} 53.0"), "{text}");
    cold(&mut c);
    // It dies again: its file is read once more (final now), then it settles.
    alive.lock().unwrap().remove(&105);
    body(&mut c);
    body(&mut c);
    let (text, s) = body(&mut c);
    assert_eq!(s.unchecked, 10, "{s:?}");
    assert!(text.contains("c_total{i=\"0\"} 53.0"), "{text}");
    cold(&mut c);
}

/// The watch is set up after the first scan that can list the directory: a directory
/// that does not exist yet when the exporter starts is watched once it appears (scrapes
/// before that fail with an error naming it).
#[test]
fn a_directory_made_after_start_is_watched() {
    require_python();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("later");
    let (_alive, probe) = declared_liveness();
    let mut c = Collector::new(&dir, 2);
    c.set_liveness(probe);
    let err = c.collect().unwrap_err().to_string();
    assert!(err.contains("later"), "{err}");
    std::fs::create_dir(&dir).unwrap();
    for pid in 100..104 {
        counter(&dir.join(format!("counter_{pid}.db")), &[1.0]);
    }
    assert_eq!(body(&mut c).1.parsed, 4);
    body(&mut c);
    assert_settled_unstated(&body(&mut c).1, 4);
    // A re-created file is named by the watch and read again.
    let tmp = dir.join(".tmp");
    counter(&tmp, &[9.0]);
    std::fs::rename(&tmp, dir.join("counter_101.db")).unwrap();
    let (text, s) = body(&mut c);
    assert_eq!((s.parsed, s.unchecked), (1, 3), "{s:?}");
    assert!(text.contains("c_total{i=\"0\"} 12.0"), "{text}");
}

/// A writer that writes through its mapping after the last scrape and then dies makes no
/// event and no change of size or ctime: its file must still be read once more after its
/// death, or those last writes would be lost for good.
#[test]
fn last_writes_before_death_are_read() {
    let (dir, alive, probe) = counters(200..204, &[1.0]);
    alive.lock().unwrap().insert(202);
    let mut writer = std::process::Command::new("python3")
        .arg(py_script("mmap_write.py"))
        .arg(dir.path().join("counter_202.db"))
        .arg("30")
        .arg("--wait")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(writer.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let mut c = Collector::new(dir.path(), 2);
    c.set_liveness(probe.clone());
    for _ in 0..3 {
        assert!(body(&mut c).0.contains("c_total{i=\"0\"} 33.0"));
    }
    // It writes through the mapping it already has, and exits.
    std::io::Write::write_all(writer.stdin.as_mut().unwrap(), b"go\n").unwrap();
    assert!(writer.wait().unwrap().success());
    alive.lock().unwrap().remove(&202);
    for _ in 0..3 {
        let (text, _) = body(&mut c);
        assert!(
            text.contains("c_total{i=\"0\"} 34.0"),
            "last writes lost: {text}"
        );
    }
}

/// A `.db` name that is a symlink is read through it, like Python's `open()`, and a
/// change of its target (which makes no event in the watched directory) or of the link
/// itself is served at the next scrape; a dangling link is skipped without failing it.
#[test]
fn symlinked_files_follow_their_target() {
    let (dir, _alive, probe) = counters(300..303, &[1.0]);
    let elsewhere = tempfile::tempdir().unwrap();
    let (first, second) = (elsewhere.path().join("a.db"), elsewhere.path().join("b.db"));
    counter(&first, &[10.0, 20.0]);
    counter(&second, &[30.0]);
    let link = dir.path().join("counter_303.db");
    std::os::unix::fs::symlink(&first, &link).unwrap();
    let mut c = Collector::new(dir.path(), 2);
    c.set_liveness(probe.clone());
    let cold = || {
        let mut fresh = Collector::new(dir.path(), 2);
        fresh.set_liveness(probe.clone());
        body(&mut fresh).0
    };
    for _ in 0..3 {
        let text = body(&mut c).0;
        assert!(text.contains("c_total{i=\"0\"} 13.0"), "{text}");
        assert!(text.contains("c_total{i=\"1\"} 20.0"), "{text}");
    }
    // The target is rewritten in place, elsewhere: no event here.
    counter(&first, &[11.0, 21.0]);
    let text = body(&mut c).0;
    assert!(text.contains("c_total{i=\"1\"} 21.0"), "{text}");
    assert_eq!(text, cold());
    // The link now points at another file.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&second, &link).unwrap();
    let text = body(&mut c).0;
    assert!(text.contains("c_total{i=\"0\"} 33.0"), "{text}");
    assert!(!text.contains("c_total{i=\"1\"}"), "{text}");
    assert_eq!(text, cold());
    // Its target vanishes: the other files are still served.
    std::fs::remove_file(&second).unwrap();
    let (text, s) = body(&mut c);
    assert!(text.contains("c_total{i=\"0\"} 3.0"), "{text}");
    assert_eq!(text, cold());
    assert_eq!(s.files, 3, "{s:?}");
}
