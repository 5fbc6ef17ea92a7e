//! Property test of the incremental scrape: any sequence of writer births, writes, deaths,
//! file deletions and re-creations (pid reuse) leaves the output of a long-lived collector
//! byte-identical to a cold scan of the same directory by a fresh one. The files are real
//! `.db` files written with the crate's own writer; which pids are alive is declared through
//! the scanner's liveness hook (the pids are names here, not processes). Cases:
//! `PROPTEST_CASES` (default 32).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use multiproc_exporter::collector::Collector;
use multiproc_exporter::expose::{Escaping, Format, encode};
use multiproc_exporter::format::{python_key, write_file};
use multiproc_exporter::scan::LivenessProbe;
use proptest::prelude::*;

/// Writer slots; pid of slot `i` is `PID0 + i`.
const WRITERS: u8 = 6;
const PID0: i32 = 100;

/// Values chosen to hit every rule: integers (exact sums), fractions (order-dependent
/// sums), a sum beyond 2^53, negatives, ties, NaN (absorbing min/max).
const VALUES: [f64; 10] = [0.0, 1.0, 2.0, 0.1, 0.7, -3.0, 1e17, f64::NAN, 2.5, 1.0];
/// Timestamps for `mostrecent` and the fork's `latest` (0 = never set, +inf = none).
const STAMPS: [f64; 6] = [0.0, 1.0, 2.0, 2.0, f64::INFINITY, 5.0];

#[derive(Debug, Clone)]
enum Step {
    /// The writer starts (alive) and writes its files.
    Birth(u8, u32),
    /// The writer's files get new values, whether it is alive or not.
    Write(u8, u32),
    /// The writer dies (its files stay).
    Die(u8),
    /// The writer's files are deleted.
    Delete(u8),
    /// The pid is reused: files deleted and written anew by a live process.
    Reuse(u8, u32),
    /// One more scrape without a change.
    Scrape,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..WRITERS, any::<u32>()).prop_map(|(w, s)| Step::Birth(w, s)),
        2 => (0..WRITERS, any::<u32>()).prop_map(|(w, s)| Step::Write(w, s)),
        3 => (0..WRITERS).prop_map(Step::Die),
        1 => (0..WRITERS).prop_map(Step::Delete),
        1 => (0..WRITERS, any::<u32>()).prop_map(|(w, s)| Step::Reuse(w, s)),
        1 => Just(Step::Scrape),
    ]
}

/// A small deterministic value stream from a seed.
struct Gen(u32);

impl Gen {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        self.0 >> 8
    }
    fn value(&mut self) -> f64 {
        VALUES[self.next() as usize % VALUES.len()]
    }
    fn stamp(&mut self) -> f64 {
        STAMPS[self.next() as usize % STAMPS.len()]
    }
    fn coin(&mut self) -> bool {
        self.next().is_multiple_of(2)
    }
}

fn write_db(dir: &Path, name: &str, entries: &[(String, f64, f64)]) {
    write_file(
        &dir.join(name),
        entries.iter().map(|(k, v, t)| (k.as_bytes(), *v, *t)),
    )
    .unwrap();
}

/// Writes every file of writer `w` (layout and values vary with the seed).
fn write_writer(dir: &Path, w: u8, seed: u32) {
    let pid = PID0 + w as i32;
    let mut g = Gen(seed ^ ((w as u32) << 20));
    let mut counter = Vec::new();
    for l in ["x", "y", "z"] {
        if g.coin() {
            let k = python_key("c", "c_total", &[("a", l)], "Counter.");
            counter.push((k, g.value(), 0.0));
        }
    }
    write_db(dir, &format!("counter_{pid}.db"), &counter);
    let mut hist = Vec::new();
    for le in ["0.1", "1.0", "+Inf"] {
        let k = python_key("h", "h_bucket", &[("le", le)], "Histogram.");
        hist.push((k, g.value(), 0.0));
    }
    hist.push((python_key("h", "h_sum", &[], "Histogram."), g.value(), 0.0));
    write_db(dir, &format!("histogram_{pid}.db"), &hist);
    for mode in ["all", "max", "min", "sum", "livesum", "mostrecent"] {
        let name = format!("g_{mode}");
        let mut e = Vec::new();
        for q in ["a", "b"] {
            if g.coin() {
                let k = python_key(&name, &name, &[("q", q)], "Gauge.");
                e.push((k, g.value(), g.stamp()));
            }
        }
        write_db(dir, &format!("gauge_{mode}_{pid}.db"), &e);
    }
    // The postmates fork's `latest` gauge: 3-element keys, per-series newest timestamp.
    let fork = [("gl", g.value(), g.stamp()), ("gl", g.value(), g.stamp())];
    let e: Vec<(String, f64, f64)> = fork
        .iter()
        .enumerate()
        .map(|(i, (n, v, t))| (format!("[\"{n}\", \"{n}\", {{\"s\": \"{i}\"}}]"), *v, *t))
        .collect();
    write_db(dir, &format!("gauge_latest_{pid}.db"), &e);
}

fn delete_writer(dir: &Path, w: u8) {
    let suffix = format!("_{}.db", PID0 + w as i32);
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(&suffix) {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
}

fn collector(dir: &Path, probe: &LivenessProbe) -> Collector {
    let mut c = Collector::new(dir, 2);
    c.set_liveness(probe.clone());
    c
}

fn body(c: &mut Collector) -> String {
    let got = c.collect().unwrap();
    encode(&got.families, &Format::Text(Escaping::Underscores))
}

fn run(steps: &[Step]) {
    let dir = tempfile::tempdir().unwrap();
    let alive: Arc<Mutex<HashSet<i32>>> = Arc::default();
    let a = alive.clone();
    let probe: LivenessProbe = Arc::new(move |pid| a.lock().unwrap().contains(&pid));
    let mut warm = collector(dir.path(), &probe);
    let mut exists: HashSet<u8> = HashSet::new();
    for (n, s) in steps.iter().enumerate() {
        // File times are coarse (a clock tick): a rewrite must not share the ctime of the
        // previous write, or an unchanged size would make it look unchanged (as for a
        // real writer, which never rewrites a file in the tick it was read).
        std::thread::sleep(Duration::from_millis(12));
        match *s {
            Step::Birth(w, seed) => {
                alive.lock().unwrap().insert(PID0 + w as i32);
                write_writer(dir.path(), w, seed);
                exists.insert(w);
            }
            Step::Write(w, seed) if exists.contains(&w) => write_writer(dir.path(), w, seed),
            Step::Write(..) | Step::Scrape => {}
            Step::Die(w) => {
                alive.lock().unwrap().remove(&(PID0 + w as i32));
            }
            Step::Delete(w) => {
                delete_writer(dir.path(), w);
                exists.remove(&w);
            }
            Step::Reuse(w, seed) => {
                delete_writer(dir.path(), w);
                alive.lock().unwrap().insert(PID0 + w as i32);
                write_writer(dir.path(), w, seed);
                exists.insert(w);
            }
        }
        let served = body(&mut warm);
        let cold = body(&mut collector(dir.path(), &probe));
        assert_eq!(served, cold, "after step {n} of {steps:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32)
    ))]

    #[test]
    fn warm_scrape_equals_cold_scan(steps in proptest::collection::vec(step(), 4..32)) {
        run(&steps);
    }
}

/// A fixed sequence that must exercise the cached runs: dead writers settle, a live one
/// changes between them, one dead pid is reused and dies again.
#[test]
fn settled_runs_follow_changes() {
    let mut steps: Vec<Step> = (0..WRITERS).map(|w| Step::Birth(w, w as u32 * 7)).collect();
    steps.extend([
        Step::Die(0),
        Step::Die(1),
        Step::Die(3),
        Step::Die(4),
        Step::Scrape,
    ]);
    steps.extend([
        Step::Write(2, 99),
        Step::Scrape,
        Step::Reuse(1, 5),
        Step::Write(1, 6),
    ]);
    steps.extend([
        Step::Die(1),
        Step::Scrape,
        Step::Delete(3),
        Step::Scrape,
        Step::Die(5),
    ]);
    steps.extend([Step::Scrape, Step::Birth(3, 11), Step::Die(3), Step::Scrape]);
    run(&steps);
}
