//! multiproc-exporter on directories of the postmates fork. The fixtures were written by
//! the fork's own client, archived by the fork's own archiver and read by the fork's own
//! collector (`tests/fixtures/fork/make.py`); the tests need none of it at run time.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use multiproc_exporter::format;
use multiproc_exporter::lockfile::{self, LockKind};

use crate::archive::{
    CRASH_POINTS, archive_args, crash_at, db_files, fully_archived, run_until_archived,
};
use crate::helpers::*;

const CASES: [&str; 4] = ["live", "live-forkarch", "forkarch", "ours"];
/// The archives the fork's `_get_archive_paths` names.
const FORK_ARCHIVES: [&str; 5] = [
    "counter.db",
    "histogram.db",
    "gauge_latest.db",
    "gauge_max.db",
    "gauge_min.db",
];

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fork")
        .join(case)
}

fn recorded(case: &str, file: &str) -> String {
    std::fs::read_to_string(fixture(case).join(file)).expect("fixture file")
}

fn recorded_pids(case: &str) -> (Vec<i32>, Vec<i32>) {
    let v: serde_json::Value =
        serde_json::from_str(&recorded(case, "pids.json")).expect("pids.json");
    let list = |k: &str| -> Vec<i32> {
        v[k].as_array()
            .expect("pid list")
            .iter()
            .map(|p| p.as_i64().expect("pid") as i32)
            .collect()
    };
    (list("alive"), list("dead"))
}

/// A pid that belonged to a process that has exited (and been reaped).
fn dead_pid() -> i32 {
    let mut c = Command::new("true").spawn().expect("spawn true");
    let pid = c.id() as i32;
    c.wait().expect("wait");
    pid
}

/// A process that maps one `.db` file until dropped, like a live worker: the archiver
/// only believes the directory's PID namespace is ours when a live pid maps its own file.
const MAPPER: &str = "import mmap, sys\nprint(flush=True)\nf = open(sys.stdin.readline().strip(), 'r+b')\nm = mmap.mmap(f.fileno(), 0)\nprint('mapped', flush=True)\nsys.stdin.read()\n";

/// A copy of a fixture directory whose pids are mapped onto this machine: the recorded
/// dead pids onto exited processes, the alive ones onto processes that map their files
/// (stopped on drop), so that the archiver sees the dead/alive split the fork's did.
struct Mapped {
    dir: tempfile::TempDir,
    map: Vec<(i32, i32)>,
    dead: Vec<i32>,
    sleepers: Vec<Child>,
}

impl Mapped {
    fn new(case: &str, keep: impl Fn(&str) -> bool) -> Mapped {
        let (alive, dead) = recorded_pids(case);
        let mut m = Mapped {
            dir: tempfile::tempdir().expect("tempdir"),
            map: Vec::new(),
            dead: Vec::new(),
            sleepers: Vec::new(),
        };
        require_python();
        for old in alive {
            let c = Command::new("python3")
                .args(["-c", MAPPER])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3");
            m.map.push((old, c.id() as i32));
            m.sleepers.push(c);
        }
        for old in dead {
            let new = dead_pid();
            m.map.push((old, new));
            m.dead.push(new);
        }
        m.copy_from(&fixture(case).join("dir"), &m.map.clone(), keep);
        for c in &mut m.sleepers {
            let path = m.dir.path().join(format!("counter_{}.db", c.id()));
            let mut out = BufReader::new(c.stdout.take().expect("stdout"));
            let mut line = String::new();
            out.read_line(&mut line).expect("started");
            let stdin = c.stdin.as_mut().expect("stdin");
            writeln!(stdin, "{}", path.display()).expect("send path");
            stdin.flush().expect("flush");
            line.clear();
            out.read_line(&mut line).expect("mapped");
            assert_eq!(line.trim(), "mapped", "{}", path.display());
        }
        m
    }

    /// Copies `src`'s `.db` files that `keep` accepts, renaming pids by `map`.
    fn copy_from(&self, src: &Path, map: &[(i32, i32)], keep: impl Fn(&str) -> bool) {
        for ent in std::fs::read_dir(src).expect("ls fixture") {
            let name = ent
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .to_string();
            if !keep(&name) {
                continue;
            }
            let renamed = map
                .iter()
                .find_map(|(old, new)| {
                    name.strip_suffix(&format!("_{old}.db"))
                        .map(|stem| format!("{stem}_{new}.db"))
                })
                .unwrap_or_else(|| name.clone());
            std::fs::copy(src.join(&name), self.dir.path().join(renamed)).expect("copy");
        }
    }

    /// Adds the files of one more dead worker (a recorded dead pid's files, minus `live*`
    /// gauges, which mark_process_dead would have removed), under a fresh dead pid.
    fn add_dead_worker(&mut self, case: &str) -> i32 {
        let (_, dead) = recorded_pids(case);
        let new = dead_pid();
        self.copy_from(&fixture(case).join("dir"), &[(dead[0], new)], |n| {
            n.ends_with(&format!("_{}.db", dead[0])) && !n.starts_with("gauge_live")
        });
        self.dead.push(new);
        new
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A recorded exposition with its `pid` labels mapped like the files.
    fn subst(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (old, new) in &self.map {
            out = out.replace(&format!("pid=\"{old}\""), &format!("pid=\"{new}\""));
        }
        out
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        for c in &mut self.sleepers {
            drop(c.stdin.take());
            let _ = c.wait();
        }
    }
}

fn scrape_om(exp: &Exporter, path: &str) -> String {
    let r = get(
        exp.addr,
        path,
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    );
    assert_eq!(r.0, 200);
    String::from_utf8(r.2).expect("utf-8")
}

fn copy_case(case: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for ent in std::fs::read_dir(fixture(case).join("dir")).expect("ls") {
        let ent = ent.expect("entry");
        std::fs::copy(ent.path(), dir.path().join(ent.file_name())).expect("copy");
    }
    dir
}

#[test]
fn every_fork_fixture_is_served_as_the_fork_serves_it() {
    for case in CASES {
        let dir = copy_case(case);
        let exp = Exporter::start(dir.path(), &[]);
        let ours = strip_own(&exp.scrape());
        // The fork's merge over the files in sorted order (ours): byte for byte, so the
        // sample order, family names, help and timestamps are the fork's.
        assert_eq!(ours, recorded(case, "expected.sorted.txt"), "{case}");
        // The fork's collector as it is (directory order): same lines.
        assert_same_exposition(&recorded(case, "expected.txt"), &ours);
        let om = strip_own(&scrape_om(&exp, "/metrics"));
        assert_same_exposition(&recorded(case, "expected.om.txt"), &om);
        assert_eq!(strip_own(&exp.scrape()), ours, "{case}: second scrape");
        // Spot checks, so that a broken recording cannot hide them: explicit timestamps
        // (1700000000.25 + worker index) in milliseconds, in seconds for OpenMetrics.
        assert!(ours.contains("# HELP requests_total Multiprocess metric\n"));
        let stamped = |text: &str, unit: &str| {
            text.lines().any(|l| {
                l.starts_with("queue_depth{queue=\"a\"} ")
                    && l.split(' ')
                        .nth(2)
                        .is_some_and(|t| t.starts_with("170000000") && t.ends_with(unit))
            })
        };
        assert!(stamped(&ours, "250"), "{case}: {ours}");
        assert!(stamped(&om, ".25"), "{case}: {om}");
        if case != "forkarch" {
            assert!(ours.contains("\nunstamped 42.0\n"), "no timestamp for +inf");
        }
    }
}

/// `key -> (value, timestamp)` of an archive file.
fn archive_entries(path: &Path) -> BTreeMap<String, (f64, f64)> {
    format::read_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .map(|(k, v, ts)| (k, (v, ts)))
        .collect()
}

#[test]
fn our_archives_of_a_fork_directory_are_the_forks_archives() {
    let m = Mapped::new("live", |_| true);
    let exp = run_until_archived(m.path(), &m.dead);
    let ours = strip_own(&exp.scrape());
    // The fork's reader on the fork's archives, and on ours (recorded by make.py).
    assert_same_exposition(&m.subst(&recorded("live-forkarch", "expected.txt")), &ours);
    assert_same_exposition(&m.subst(&recorded("ours", "expected.txt")), &ours);
    let check = recorded("ours", "check.json");
    assert!(!check.contains("false"), "make.py's check failed: {check}");
    // Entry for entry, the files the fork's archiver wrote from the same directory.
    for name in FORK_ARCHIVES {
        let want = archive_entries(&fixture("live-forkarch").join("dir").join(name));
        let got = archive_entries(&m.path().join(name));
        assert_eq!(
            want.keys().collect::<Vec<_>>(),
            got.keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (k, (wv, wts)) in &want {
            let (gv, gts) = got[k];
            assert!(
                (wv - gv).abs() <= 1e-9 * wv.abs().max(gv.abs()),
                "{name} {k}: {wv} vs {gv}"
            );
            assert_eq!(wts.to_bits(), gts.to_bits(), "{name} {k}: timestamp");
        }
    }
    // Dead summaries are folded (the fork would keep the files and drop them from its
    // sidecar's output); dead `all` gauges are kept, as the fork keeps them.
    let files = db_files(m.path());
    assert!(files.contains(&"summary.db".to_string()), "{files:?}");
    for p in &m.dead {
        assert!(files.contains(&format!("gauge_all_{p}.db")), "{files:?}");
    }
    assert!(
        !files.iter().any(|f| f.ends_with("_archive.db")),
        "{files:?}"
    );
    assert!(m.path().join("lockfile").exists());
}

#[test]
fn a_crash_at_every_step_on_a_fork_directory_neither_double_counts_nor_loses() {
    let mut m = Mapped::new("live", |n| !n.starts_with("gauge_live"));
    let before = strip_own(&Exporter::start(m.path(), &[]).scrape());
    for point in CRASH_POINTS {
        m.add_dead_worker("live");
        // Our reader is the fork's reader on these files (the test above).
        let expected = strip_own(&Exporter::start(m.path(), &[]).scrape());
        crash_at(m.path(), point);
        let exp = run_until_archived(m.path(), &m.dead);
        assert_same_exposition(&expected, &strip_own(&exp.scrape()));
        let names = db_files(m.path());
        assert!(names.contains(&"gauge_latest.db".to_string()), "{names:?}");
    }
    assert_ne!(before, strip_own(&Exporter::start(m.path(), &[]).scrape()));
}

#[test]
fn the_forks_lockfile_is_honoured_by_scrapes_and_by_the_archiver() {
    let m = Mapped::new("live", |_| true);
    let exp = Exporter::start(m.path(), &[]);
    let addr = exp.addr;
    // An exclusive holder (the fork's archiver) delays a scrape until it lets go.
    let ex = lockfile::lock(m.path(), LockKind::Exclusive, true, Duration::from_secs(5))
        .expect("lock")
        .expect("created");
    let scrape = std::thread::spawn(move || get(addr, "/metrics", &[]));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!scrape.is_finished(), "scrape ran under an exclusive lock");
    drop(ex);
    let r = scrape.join().expect("scrape thread");
    assert_eq!(r.0, 200);
    drop(exp);
    // A shared holder (the fork's collector) keeps our archiver from staging anything.
    let files = db_files(m.path());
    let sh = lockfile::lock(m.path(), LockKind::Shared, false, Duration::from_secs(5))
        .expect("lock")
        .expect("exists");
    let mut child = Command::new(exporter_bin())
        .arg(m.path())
        .args(["--listen", &free_addr().to_string()])
        .args(archive_args())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(db_files(m.path()), files, "archived under a shared lock");
    assert!(!m.path().join(".mpe-staging").exists());
    drop(sh);
    assert!(
        wait_until(Duration::from_secs(30), || fully_archived(
            m.path(),
            &m.dead
        )),
        "{:?}",
        db_files(m.path())
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Family names (`# TYPE` lines) and sample names of an exposition.
fn names_in(text: &str) -> (Vec<String>, Vec<String>) {
    let mut fams = Vec::new();
    let mut samples = Vec::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            fams.push(rest.split(' ').next().unwrap_or("").to_string());
        } else if !l.starts_with('#') {
            let n = l.split(['{', ' ']).next().unwrap_or("").to_string();
            if !samples.contains(&n) {
                samples.push(n);
            }
        }
    }
    (fams, samples)
}

#[test]
fn name_filter_serves_only_the_named_families_for_fork_and_upstream() {
    let dir = copy_case("live");
    let exp = Exporter::start(dir.path(), &[]);
    let q = "/metrics?name[]=requests_total&name[]=temperature&name%5B%5D=sizes_bucket&name[]=";
    let text = String::from_utf8(get(exp.addr, q, &[]).2).expect("utf-8");
    assert_eq!(
        names_in(&text),
        (
            vec![
                "requests_total".into(),
                "temperature".into(),
                "sizes".into()
            ],
            vec![
                "requests_total".into(),
                "temperature".into(),
                "sizes_bucket".into()
            ]
        ),
        "{text}"
    );
    let om = scrape_om(&exp, q);
    assert_eq!(
        names_in(&om).0,
        vec!["requests", "temperature", "sizes"],
        "{om}"
    );
    assert!(om.ends_with("# EOF\n"));
    // No name[] (or only empty ones): everything, as Python's parse_qs drops blanks.
    assert_eq!(
        strip_own(&String::from_utf8(get(exp.addr, "/metrics?name[]=", &[]).2).expect("utf-8")),
        strip_own(&exp.scrape())
    );
    // An upstream directory, and our own families can be asked for too.
    let up = tempfile::tempdir().expect("tempdir");
    run_py(
        "workers.py",
        &[up.path().to_str().expect("utf-8"), "nasty", "1"],
    );
    let exp = Exporter::start(up.path(), &[]);
    let q = "/metrics?name[]=lat_seconds&name[]=g_max&name[]=multiproc_exporter_scrapes";
    let text = String::from_utf8(get(exp.addr, q, &[]).2).expect("utf-8");
    let (mut fams, _) = names_in(&text);
    fams.sort();
    assert_eq!(
        fams,
        vec!["g_max", "lat_seconds", "multiproc_exporter_scrapes_total"],
        "{text}"
    );
    assert!(
        text.contains("lat_seconds_bucket{le=\"+Inf\",method=\"GET\"} 6.0\n"),
        "{text}"
    );
}
