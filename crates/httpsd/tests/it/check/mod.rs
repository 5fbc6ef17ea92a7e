//! `httpsd check`: the original's cases, every validation rule, all problems reported,
//! JSON output, exit codes, `--ignore-path` in both forms, skipped files and unsafe
//! symlinks; Python and executable generators in `python`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{Tree, bin};

/// What one `check` run printed and returned.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `httpsd <args>` in `cwd`, bounded in time.
fn httpsd(cwd: &Path, args: &[&str]) -> Run {
    let started = Instant::now();
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn httpsd");
    let pid = child.id();
    // The pipes are drained on other threads so a large report cannot block the child.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("httpsd {args:?} (pid {pid}) did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code().expect("exited normally, not by a signal"),
        stdout: out_t.join().expect("stdout reader"),
        stderr: err_t.join().expect("stderr reader"),
    }
}

/// `httpsd check ROOT <extra>` with the root given as an absolute path.
fn check(root: &Path, extra: &[&str]) -> Run {
    let root_s = root.display().to_string();
    let mut args = vec!["check", root_s.as_str()];
    args.extend_from_slice(extra);
    httpsd(root, &args)
}

/// `check --format json`, parsed.
fn check_json(root: &Path, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--format", "json"];
    args.extend_from_slice(extra);
    let run = check(root, &args);
    let v = run.json();
    (run.code, v)
}

/// The entry of `generators` for `path`.
fn generator<'a>(report: &'a Value, path: &str) -> &'a Value {
    report["generators"]
        .as_array()
        .expect("generators is a list")
        .iter()
        .find(|g| g["path"] == path)
        .unwrap_or_else(|| panic!("no generator {path} in {report:#}"))
}

/// `(severity, rule, group)` of each problem of one generator.
fn problems(report: &Value, path: &str) -> Vec<(String, String, Option<u64>)> {
    generator(report, path)["problems"]
        .as_array()
        .expect("problems is a list")
        .iter()
        .map(|p| {
            (
                p["severity"].as_str().expect("severity").to_string(),
                p["rule"].as_str().expect("rule").to_string(),
                p["group"].as_u64(),
            )
        })
        .collect()
}

fn status(report: &Value, path: &str) -> String {
    generator(report, path)["status"]
        .as_str()
        .expect("status")
        .to_string()
}

fn paths(report: &Value, key: &str) -> Vec<String> {
    report[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is a list in {report:#}"))
        .iter()
        .map(|g| g["path"].as_str().expect("path").to_string())
        .collect()
}

/// An expected problem: severity, rule, group.
type Expected = (&'static str, &'static str, Option<u64>);

fn err(sev_rule_group: Expected) -> (String, String, Option<u64>) {
    (
        sev_rule_group.0.to_string(),
        sev_rule_group.1.to_string(),
        sev_rule_group.2,
    )
}

#[test]
fn original_cases_each_fail_with_their_rule() {
    let t = Tree::new();
    t.write(
        "good.yaml",
        "- targets: ['10.0.0.5:9100']\n  labels: {job: node}\n",
    );
    // test_validate.py::test_no_port, test_no_targets, test_label_notdict, test_label_no_bool
    t.write("noport.yaml", "- targets: ['10.0.0.6:9100', '10.0.0.6']\n");
    t.write("notargets.json", r#"[{"labels": {"job": "x"}}]"#);
    t.write(
        "labels_list.json",
        r#"[{"targets": ["a:1"], "labels": ["job"]}]"#,
    );
    t.write(
        "label_bool.yaml",
        "- targets: ['a:1']\n  labels: {enabled: false}\n",
    );
    let (code, r) = check_json(t.root(), &[]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(status(&r, "good.yaml"), "pass");
    assert_eq!(
        problems(&r, "noport.yaml"),
        [err(("error", "target_format", Some(0)))]
    );
    assert_eq!(
        problems(&r, "notargets.json"),
        [err(("error", "targets_missing", Some(0)))]
    );
    assert_eq!(
        problems(&r, "labels_list.json"),
        [err(("error", "labels_not_map", Some(0)))]
    );
    assert_eq!(
        problems(&r, "label_bool.yaml"),
        [err(("error", "label_value", Some(0)))]
    );
    for bad in [
        "noport.yaml",
        "notargets.json",
        "labels_list.json",
        "label_bool.yaml",
    ] {
        assert_eq!(status(&r, bad), "fail", "{bad}");
    }
    assert_eq!(r["summary"]["generators"], 5);
    assert_eq!(r["summary"]["passed"], 1);
    assert_eq!(r["summary"]["failed"], 4);
    assert_eq!(r["ok"], false);
}

#[test]
fn every_rule_is_reported_with_its_group() {
    let t = Tree::new();
    let cases: &[(&str, &str, &[Expected])] = &[
        ("null.json", "null", &[("error", "null_result", None)]),
        (
            "dict.json",
            r#"{"targets": ["a:1"]}"#,
            &[("error", "not_a_list", None)],
        ),
        (
            "string_group.json",
            r#"[{"targets": ["a:1"]}, "a:1"]"#,
            &[("error", "group_not_object", Some(1))],
        ),
        (
            "unknown_key.json",
            r#"[{"targets": ["a:1"], "target": ["b:1"]}]"#,
            &[("error", "unknown_key", Some(0))],
        ),
        (
            "targets_string.json",
            r#"[{"targets": "1.1.1.1:1"}]"#,
            &[("error", "targets_not_list", Some(0))],
        ),
        (
            "target_number.json",
            r#"[{"targets": ["a:1", 80]}]"#,
            &[("error", "target_not_string", Some(0))],
        ),
        (
            "bad_port.json",
            r#"[{"targets": ["a:1"]}, {"targets": ["a:0", "b:65536", "c:http"]}]"#,
            &[
                ("error", "target_format", Some(1)),
                ("error", "target_format", Some(1)),
                ("error", "target_format", Some(1)),
            ],
        ),
        (
            "bad_host.json",
            r#"[{"targets": ["http://a:80", "::1:80", "-x-:1", "[zz]:1"]}]"#,
            &[
                ("error", "target_format", Some(0)),
                ("error", "target_format", Some(0)),
                ("error", "target_format", Some(0)),
                ("error", "target_format", Some(0)),
            ],
        ),
        (
            "label_name.json",
            r#"[{"targets": ["a:1"], "labels": {"bad-name": "x", "1st": "y"}}]"#,
            &[
                ("error", "label_name", Some(0)),
                ("error", "label_name", Some(0)),
            ],
        ),
        (
            "label_number.yaml",
            "- targets: ['a:1']\n  labels: {port: 8080}\n",
            &[("error", "label_value", Some(0))],
        ),
        (
            "dup.json",
            r#"[{"targets": ["a:1"]}, {"targets": ["b:1", "a:1"]}]"#,
            &[("warning", "duplicate_target", Some(1))],
        ),
        (
            "reserved.json",
            r#"[{"targets": ["a:1"], "labels": {"__address__": "x:1"}}]"#,
            &[("warning", "reserved_label", Some(0))],
        ),
        ("empty.json", "[]", &[("warning", "empty_result", None)]),
        (
            "empty_targets.yaml",
            "- targets: []\n  labels: null\n",
            &[("warning", "empty_result", None)],
        ),
        (
            "fine.json",
            r#"[{"targets": ["[::1]:9100", "10.0.0.1:65535", "host-1.example.com:80"], "labels": {"__scheme__": "https", "_x": "1"}}, {"targets": ["b:2"]}]"#,
            &[],
        ),
    ];
    // One directory per case, so that cases sharing a target do not warn about
    // duplicates across generators of one directory.
    let path = |name: &str| format!("{}/{name}", name.replace('.', "_"));
    for (name, content, _) in cases {
        t.write(&path(name), content);
    }
    let (code, r) = check_json(t.root(), &[]);
    assert_eq!(code, 1);
    for (name, _, expected) in cases {
        let expected: Vec<_> = expected.iter().copied().map(err).collect();
        let name = &path(name);
        assert_eq!(problems(&r, name), expected, "{name}: {r:#}");
        let fails = expected.iter().any(|(s, _, _)| s == "error");
        assert_eq!(
            status(&r, name),
            if fails { "fail" } else { "pass" },
            "{name}"
        );
    }
    // Messages name what is wrong.
    let msgs: Vec<&str> = generator(&r, &path("bad_port.json"))["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["message"].as_str().unwrap())
        .collect();
    assert!(msgs[0].contains("\"a:0\""), "{msgs:?}");
    assert!(msgs[1].contains("\"b:65536\""), "{msgs:?}");
    assert_eq!(generator(&r, &path("fine.json"))["targets"], 4);
    assert_eq!(generator(&r, &path("fine.json"))["groups"], 2);
    // Warnings do not fail a generator; every warning is counted.
    assert_eq!(r["summary"]["warnings"], 4);
}

#[test]
fn allow_missing_port_accepts_host_only_targets() {
    let t = Tree::new();
    t.write(
        "hosts.yaml",
        "- targets: ['10.0.0.6', 'db.example.com', '[::1]']\n",
    );
    let (code, r) = check_json(t.root(), &[]);
    assert_eq!(code, 1);
    assert_eq!(problems(&r, "hosts.yaml").len(), 3);
    let (code, r) = check_json(t.root(), &["--allow-missing-port"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(status(&r, "hosts.yaml"), "pass");
    assert_eq!(r["summary"]["targets"], 3);
}

#[test]
fn several_failures_are_all_reported_in_text() {
    let t = Tree::new();
    // The original reported PASS/FAIL from the last group only: here the last is fine.
    t.write(
        "a/first_bad.yaml",
        "- targets: ['nope']\n- labels: {x: 1}\n- targets: ['ok:1']\n",
    );
    t.write("b/broken.json", "[{\"targets\": [");
    t.write("b/empty.yaml", "");
    t.write("c/ok.json", r#"[{"targets": ["c:1", "c:2"]}]"#);
    let run = check(t.root(), &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let root = t.root().display().to_string();
    let out = &run.stdout;
    let line = |prefix: &str| -> String {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{out}"))
            .to_string()
    };
    let first = line(&format!(
        "FAIL run generator {root}/a/first_bad.yaml, took "
    ));
    assert!(first.ends_with("s, generated 2 targets."), "{first}");
    line(&format!("FAIL run generator {root}/b/broken.json, took "));
    line(&format!("FAIL run generator {root}/b/empty.yaml, took "));
    let ok = line(&format!("PASS run generator {root}/c/ok.json, took "));
    assert!(ok.ends_with("generated 2 targets."), "{ok}");
    // Every problem: file, group, severity and rule on each line.
    line(&format!(
        "  {root}/a/first_bad.yaml: group 0: error[target_format]: target \"nope\""
    ));
    line(&format!(
        "  {root}/a/first_bad.yaml: group 1: error[targets_missing]: "
    ));
    line(&format!(
        "  {root}/a/first_bad.yaml: group 1: error[label_value]: "
    ));
    line(&format!("  {root}/b/broken.json: error[parse]: "));
    line(&format!("  {root}/b/empty.yaml: error[empty]: "));
    // Lines come in path order.
    let order: Vec<usize> = [
        "a/first_bad.yaml",
        "b/broken.json",
        "b/empty.yaml",
        "c/ok.json",
    ]
    .iter()
    .map(|p| out.find(&format!("run generator {root}/{p}")).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
    let summary = line("Summary: ");
    assert!(
        summary.starts_with("Summary: 4 generators, 1 passed, 3 failed, 0 skipped, 4 targets in "),
        "{summary}"
    );
    assert!(summary.ends_with(": FAILED"), "{summary}");
    assert_eq!(out.lines().last(), Some(summary.as_str()));
}

#[test]
fn json_document_matches_the_documented_schema() {
    let t = Tree::new();
    t.write(
        "a.json",
        r#"[{"targets": ["a:1"], "labels": {"job": "a"}}]"#,
    );
    t.write("sub/b.yaml", "- targets: ['b:1', 'b:2']\n");
    t.write("sub/bad.json", r#"[{"targets": ["x"]}]"#);
    t.write("notes.txt", "not a generator");
    let (code, r) = check_json(t.root(), &["--allow-missing-port"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["version"], 1);
    assert_eq!(r["root"], t.root().display().to_string());
    assert_eq!(r["ok"], true);
    let s = &r["summary"];
    for (key, want) in [
        ("generators", 3),
        ("passed", 3),
        ("failed", 0),
        ("skipped", 1),
        ("ignored", 0),
        ("unsafe_links", 0),
        ("unreadable", 0),
        ("targets", 4),
        ("errors", 0),
        ("warnings", 0),
    ] {
        assert_eq!(s[key], want, "summary.{key} in {r:#}");
    }
    assert!(s["duration_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        paths(&r, "generators"),
        ["a.json", "sub/b.yaml", "sub/bad.json"]
    );
    let b = generator(&r, "sub/b.yaml");
    assert_eq!(b["kind"], "yaml");
    assert_eq!(b["file"], format!("{}/sub/b.yaml", t.root().display()));
    assert_eq!(b["targets"], 2);
    assert_eq!(b["groups"], 1);
    assert_eq!(b["error"], Value::Null);
    assert!(b["duration_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(paths(&r, "skipped"), ["notes.txt"]);
    assert!(
        r["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not a generator")
    );
    for key in [
        "unsafe_links",
        "unreadable",
        "ignored",
        "unused_ignore_patterns",
    ] {
        assert_eq!(r[key], serde_json::json!([]), "{key}");
    }
    // The error object of a generator that could not produce output.
    t.write("sub/broken.yaml", "- targets: [");
    let (code, r) = check_json(t.root(), &["--allow-missing-port"]);
    assert_eq!(code, 1);
    let e = &generator(&r, "sub/broken.yaml")["error"];
    assert_eq!(e["kind"], "parse", "{r:#}");
    assert!(
        e["message"].as_str().unwrap().contains("invalid YAML"),
        "{e}"
    );
    assert_eq!(r["summary"]["errors"], 1);
    assert_eq!(r["summary"]["failed"], 1);
}

#[test]
fn exit_codes_and_usage_errors() {
    let t = Tree::new();
    t.write("a.json", r#"[{"targets": ["a:1"]}]"#);
    let run = check(t.root(), &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.ends_with(": OK\n"), "{}", run.stdout);

    let missing = t.root().join("nope");
    let run = httpsd(t.root(), &["check", missing.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);

    let file = t.root().join("a.json");
    let run = httpsd(t.root(), &["check", file.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is not a directory"), "{}", run.stderr);

    let run = httpsd(t.root(), &["check"]);
    assert_eq!(run.code, 2, "missing ROOT_DIR: {}", run.stderr);
    let run = check(t.root(), &["--format", "xml"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = check(t.root(), &["--jobs", "0"]);
    assert_eq!(run.code, 2, "{}", run.stderr);

    t.write("b.json", "[{}]");
    assert_eq!(check(t.root(), &[]).code, 1);
}

#[test]
fn empty_tree_passes_with_zero_generators() {
    let t = Tree::new();
    t.mkdir("nothing/here");
    t.write("_helpers/x.txt", "ignored by name");
    t.write(".hidden.json", "not even JSON");
    let run = check(t.root(), &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        run.stdout.trim_end().lines().collect::<Vec<_>>().len(),
        1,
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .starts_with("Summary: 0 generators, 0 passed, 0 failed, 0 skipped, 0 targets in "),
        "{}",
        run.stdout
    );
    let (code, r) = check_json(t.root(), &[]);
    assert_eq!(code, 0);
    assert_eq!(r["generators"], serde_json::json!([]));
    assert_eq!(r["skipped"], serde_json::json!([]));
    assert_eq!(r["summary"]["generators"], 0);
}

#[test]
fn skipped_files_and_unsafe_symlinks_are_listed() {
    let t = Tree::new();
    let outside = Tree::new();
    outside.write("secret.json", r#"[{"targets": ["evil:1"]}]"#);
    t.write("ok.json", r#"[{"targets": ["a:1"]}]"#);
    t.write("README.md", "# docs");
    t.write("sub/notes.txt", "notes");
    t.write("_utils/helper.txt", "ignored by its directory name");
    std::os::unix::fs::symlink(
        outside.root().join("secret.json"),
        t.root().join("escape.json"),
    )
    .expect("symlink");
    std::os::unix::fs::symlink(outside.root(), t.root().join("elsewhere")).expect("symlink");
    std::os::unix::fs::symlink(t.root().join("ok.json"), t.root().join("inside.json"))
        .expect("symlink");
    let (code, r) = check_json(t.root(), &[]);
    // Skipped files and unsafe links are reported, not failures: serve ignores them too.
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(paths(&r, "generators"), ["inside.json", "ok.json"]);
    assert_eq!(paths(&r, "skipped"), ["README.md", "sub/notes.txt"]);
    let mut links = paths(&r, "unsafe_links");
    links.sort();
    assert_eq!(links, ["elsewhere", "escape.json"]);
    assert!(
        r["unsafe_links"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("leaves the root"),
        "{r:#}"
    );
    assert_eq!(r["summary"]["skipped"], 2);
    assert_eq!(r["summary"]["unsafe_links"], 2);

    let run = check(t.root(), &[]);
    let root = t.root().display().to_string();
    assert!(
        run.stdout
            .contains(&format!("SKIP {root}/README.md: not a generator")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("UNSAFE {root}/escape.json: ")),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("helper"), "{}", run.stdout);
    assert!(!run.stdout.contains("evil"), "{}", run.stdout);
}

#[test]
fn ignore_path_in_the_original_form_and_relative_to_the_root() {
    let t = Tree::new();
    t.write("t/ok.json", r#"[{"targets": ["a:1"]}]"#);
    t.write("t/fail/bad.json", r#"[{"targets": ["no-port"]}]"#);
    t.write("t/fail/README.txt", "skipped unless ignored");
    t.write("t/failing.json", r#"[{"targets": ["no-port-either"]}]"#);
    t.write("t/sub/deep/bad.yaml", "- labels: {}\n");
    let cwd = t.root();

    let run = httpsd(cwd, &["check", "t", "--format", "json"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["summary"]["failed"], 3);

    // The original's raw prefix of "ROOT as typed/...": also catches t/failing.json.
    let run = httpsd(
        cwd,
        &[
            "check",
            "t",
            "-i",
            "t/fail",
            "--ignore-path",
            "t/sub",
            "--format",
            "json",
        ],
    );
    let r = run.json();
    assert_eq!(run.code, 0, "{r:#}");
    assert_eq!(paths(&r, "generators"), ["ok.json"]);
    assert_eq!(
        paths(&r, "ignored"),
        [
            "fail/README.txt",
            "fail/bad.json",
            "failing.json",
            "sub/deep/bad.yaml"
        ]
    );
    assert_eq!(r["ignored"][1]["pattern"], "t/fail");
    assert_eq!(r["ignored"][1]["file"], "t/fail/bad.json");
    assert_eq!(r["skipped"], serde_json::json!([]));

    // Relative to the root, component-wise: "fail" does not catch failing.json.
    let run = httpsd(
        cwd,
        &[
            "check",
            "t",
            "-i",
            "fail",
            "-i",
            "sub/deep/",
            "--format",
            "json",
        ],
    );
    let r = run.json();
    assert_eq!(run.code, 1, "{r:#}");
    assert_eq!(paths(&r, "generators"), ["failing.json", "ok.json"]);
    assert_eq!(status(&r, "failing.json"), "fail");
    assert_eq!(
        paths(&r, "ignored"),
        ["fail/README.txt", "fail/bad.json", "sub/deep/bad.yaml"]
    );

    // A root typed with "./" and a trailing slash, and a pattern that matches nothing.
    let run = httpsd(
        cwd,
        &[
            "check",
            "./t/",
            "-i",
            "./t/fail",
            "-i",
            "failing.json",
            "-i",
            "sub",
            "-i",
            "typo",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("IGNORED ./t/fail/bad.json (matches --ignore-path ./t/fail)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("PASS run generator ./t/ok.json, took "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("NOTE --ignore-path typo matched no file"),
        "{}",
        run.stdout
    );
}

#[test]
fn duplicates_across_generators_of_one_directory_warn() {
    let t = Tree::new();
    t.write("job/a.json", r#"[{"targets": ["x:1", "y:1"]}]"#);
    t.write("job/b.yaml", "- targets: ['z:1']\n- targets: ['y:1']\n");
    t.write("other/c.json", r#"[{"targets": ["x:1"]}]"#);
    let (code, r) = check_json(t.root(), &[]);
    assert_eq!(code, 0, "warnings do not fail: {r:#}");
    assert_eq!(problems(&r, "job/a.json"), []);
    assert_eq!(
        problems(&r, "job/b.yaml"),
        [err(("warning", "duplicate_target", Some(1)))]
    );
    let msg = r["generators"][1]["problems"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        msg.contains("\"y:1\"") && msg.contains("job/a.json"),
        "{msg}"
    );
    // Different directories are different jobs: no warning.
    assert_eq!(problems(&r, "other/c.json"), []);
}

mod python;
