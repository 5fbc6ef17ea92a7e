//! The exporter's output against `generate_latest(MultiProcessCollector)` of the real
//! prometheus_client 0.26.0 on the same directory, written by real Python workers.

use std::io::Read;

use multiproc_exporter::format;

use crate::helpers::*;

fn nasty_dir(workers: usize, mark_dead: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = workers.to_string();
    let mut args = vec![dir.path().to_str().expect("utf-8"), "nasty", n.as_str()];
    if mark_dead {
        args.push("mark-dead");
    }
    run_py("workers.py", &args);
    dir
}

#[test]
fn text_is_byte_identical_to_python_merging_in_sorted_order() {
    let dir = nasty_dir(3, false);
    let exp = Exporter::start(dir.path(), &[]);
    let ours = strip_own(&exp.scrape());
    // Python merging the same files in the same (sorted) order: byte for byte.
    assert_eq!(ours, oracle(dir.path(), "sorted-text"));
    // The stock collector (directory order): same lines up to float summation order.
    assert_same_exposition(&oracle(dir.path(), "text"), &ours);
    // Spot checks of the nasty cases, so that a broken oracle cannot hide them.
    assert!(ours.contains("# HELP req_total Requests \"quoted\"\\nnewline \\\\ backslash ü\n"));
    assert!(ours.contains("req_total{code=\"500\",path=\"back\\\\slash\\nnew\\\"line\"} 1.5\n"));
    assert!(ours.contains("req_total{code=\"201\",path=\"😀 astral\"} 1e+16\n"));
    assert!(ours.contains("g_specials{v=\"nan\"} NaN\n"));
    assert!(ours.contains("g_specials{v=\"big\"} 1.234567e+06\n"));
    assert!(ours.contains("sizes_bucket{le=\"1.5e+07\"} 6.0\n"));
    assert!(
        !ours.contains("q=\"never\""),
        "never-set mostrecent series must be omitted"
    );
    // Repeated scrapes (incremental path) give the same answer.
    assert_eq!(strip_own(&exp.scrape()), ours);
}

#[test]
fn openmetrics_matches_python_and_content_types_follow_accept() {
    let dir = nasty_dir(2, true);
    let exp = Exporter::start(dir.path(), &[]);
    let r = get(
        exp.addr,
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
    );
    assert_eq!(r.0, 200);
    assert_eq!(
        header(&r, "content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores")
    );
    let body = String::from_utf8(r.2).expect("utf-8");
    assert!(body.ends_with("# EOF\n"));
    assert!(body.contains("# TYPE req counter\n"));
    let ours = strip_own(&body);
    let py = oracle(dir.path(), "openmetrics");
    // Our own families come before `# EOF`; compare without them.
    assert_same_exposition(&py, &ours);

    let plain = get(exp.addr, "/metrics", &[]);
    assert_eq!(
        header(&plain, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_same_exposition(
        &oracle(dir.path(), "text"),
        &strip_own(&String::from_utf8_lossy(&plain.2)),
    );
}

#[test]
fn gzip_when_the_scraper_asks() {
    let dir = nasty_dir(1, false);
    let exp = Exporter::start(dir.path(), &[]);
    let r = get(exp.addr, "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.0, 200);
    assert_eq!(header(&r, "content-encoding"), Some("gzip"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&r.2[..])
        .read_to_string(&mut text)
        .expect("valid gzip");
    assert_eq!(strip_own(&text), oracle(dir.path(), "sorted-text"));
}

#[test]
fn zeros_count_where_the_rule_is_not_a_sum() {
    // A gauge family (mode `max`, from its first file) whose series also come in files
    // of another type, merged without a pid label: there a zero can be the maximum, so
    // it is never skipped (zeros are skipped only where the rule is a sum). The pids do
    // not exist.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let key = format::python_key("x", "x", &[("k", "a")], "help");
    for (name, v) in [
        ("gauge_max_4000001.db", -5.0),
        ("summary_4000002.db", -7.0),
        ("summary_4000003.db", 0.0),
    ] {
        format::write_file(&d.join(name), [(key.as_bytes(), v, 0.0)]).expect("write");
    }
    let exp = Exporter::start(d, &[]);
    let ours = strip_own(&exp.scrape());
    assert_eq!(ours, oracle(d, "sorted-text"));
    assert!(ours.contains("x{k=\"a\"} 0.0\n"), "{ours}");
}

#[test]
fn a_gauge_files_pid_replaces_a_pid_label_of_the_key() {
    // Python appends ('pid', <file's pid>) to the key's label tuple and `dict()` keeps the
    // last value: a key's own `pid` label gives way to the file's.
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let own = format::python_key("g", "g", &[("k", "a"), ("pid", "mine")], "help");
    let plain = format::python_key("g", "g", &[("k", "b")], "help");
    for pid in ["4000001", "4000002"] {
        let entries = [(own.as_bytes(), 1.0, 0.0), (plain.as_bytes(), 2.0, 0.0)];
        format::write_file(&d.join(format!("gauge_all_{pid}.db")), entries).expect("write");
    }
    let exp = Exporter::start(d, &[]);
    let ours = strip_own(&exp.scrape());
    assert_eq!(ours, oracle(d, "sorted-text"));
    assert!(ours.contains("g{k=\"a\",pid=\"4000002\"} 1.0\n"), "{ours}");
    assert!(!ours.contains("mine"), "{ours}");
}

#[test]
fn writer_is_byte_identical_to_mmaped_dict() {
    require_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let py_file = dir.path().join("py.db");
    // Enough keys to make Python grow the file past 64 KiB twice.
    let script = format!(
        "import sys\nfrom prometheus_client.mmap_dict import MmapedDict, mmap_key\n\
         d = MmapedDict({:?})\n\
         for i in range(4000):\n    d.write_value(mmap_key('m', 'm_total', ['l'], [str(i) + 'x' * (i % 13)], 'help ü\\n'), i * 0.5, float(i % 3))\n\
         d.close()\n",
        py_file.to_str().expect("utf-8")
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries = format::read_file(&py_file).expect("read python file");
    assert_eq!(entries.len(), 4000);
    let ours = dir.path().join("ours.db");
    format::write_file(
        &ours,
        entries.iter().map(|(k, v, t)| (k.as_bytes(), *v, *t)),
    )
    .expect("write");
    let a = std::fs::read(&py_file).expect("read");
    let b = std::fs::read(&ours).expect("read");
    assert!(a.len() > 128 * 1024, "python file should have grown");
    assert_eq!(a.len(), b.len(), "capacity differs");
    assert!(a == b, "bytes differ");
    // And our key encoder matches json.dumps for a nasty key.
    let k = format::python_key("m", "m_total", &[("l", "ü\"\\\n😀")], "h\t\u{7f}");
    let py = run_py_inline(
        r#"import json; print(json.dumps(["m", "m_total", {"l": "ü\"\\\n😀"}, "h\t\x7f"], sort_keys=True))"#,
    );
    assert_eq!(k, py.trim_end());
}

fn run_py_inline(code: &str) -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", code])
        .output()
        .expect("python3");
    assert!(out.status.success());
    String::from_utf8(out.stdout).expect("utf-8")
}
