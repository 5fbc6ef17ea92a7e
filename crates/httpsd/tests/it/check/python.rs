//! `httpsd check` of Python and executable generators: check mode, crashing and hanging
//! generators, batches, the progress line, the generators' output in the log, the
//! workers' lives and the cached runner code.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Run, check, check_json, err, generator, httpsd, paths, problems, status};
use crate::helpers::{Tree, bin, is_alive, live_descendants, require_python};

#[test]
fn python_test_generate_targets_override_and_check_mode() {
    require_python();
    let t = Tree::new();
    // test_validate.py::test_run_test_generate_method: generate_targets needs an
    // argument that only test_generate_targets supplies.
    t.write(
        "py_should_run_test_func/a.py",
        "import os\n\
         def generate_targets(**args):\n    \
             return [{'targets': ['127.0.0.1:8080'], 'labels': {'foo': args['foo'], 'is_test': os.environ.get('PROMETHEUS_HTTP_SD_IS_TEST', '')}}]\n\
         def test_generate_targets():\n    \
             return generate_targets(foo='bar')\n",
    );
    t.write(
        "plain.py",
        "def generate_targets(**params):\n    \
             assert params == {}, params\n    \
             return [{'targets': ['10.0.0.1:80', '10.0.0.2:80'], 'labels': {'job': 'py'}}]\n",
    );
    let (code, r) = check_json(t.root(), &[]);
    assert_eq!(code, 0, "{r:#}");
    let a = generator(&r, "py_should_run_test_func/a.py");
    assert_eq!(a["kind"], "python");
    assert_eq!(a["status"], "pass");
    assert_eq!(a["targets"], 1);
    assert_eq!(generator(&r, "plain.py")["targets"], 2);
    assert_eq!(r["summary"]["targets"], 3);

    // Its output goes through the same rules as static files (and check mode is visible).
    t.write(
        "labels.py",
        "import os\n\
         def generate_targets():\n    \
             assert os.environ.get('PROMETHEUS_HTTP_SD_IS_TEST') == '1'\n    \
             return [{'targets': ['a'], 'labels': {'n': 1}}, None]\n",
    );
    let (code, r) = check_json(t.root(), &[]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(
        problems(&r, "labels.py"),
        [
            err(("error", "target_format", Some(0))),
            err(("error", "label_value", Some(0))),
            err(("error", "group_not_object", Some(1))),
        ]
    );
}

#[test]
fn crashing_and_hanging_generators_fail_alone_within_the_timeout() {
    require_python();
    let t = Tree::new();
    for i in 0..6 {
        t.write(
            &format!("good/g{i}.json"),
            format!(r#"[{{"targets": ["10.0.0.{i}:9100"]}}]"#),
        );
    }
    t.write(
        "good/gen.py",
        "def generate_targets():\n    return [{'targets': ['py:1']}]\n",
    );
    t.write_exec(
        "good/exec.sh",
        "#!/bin/sh\necho '[{\"targets\": [\"sh:1\"]}]'\n",
    );
    t.write("bad/boom.py", "def generate_targets():\n    return 1 / 0\n");
    t.write_exec("bad/crash.sh", "#!/bin/sh\necho 'it broke' >&2\nexit 3\n");
    t.write_exec("bad/hang.sh", "#!/bin/sh\nsleep 30\n");
    t.write(
        "bad/hang.py",
        "import time\ndef generate_targets():\n    time.sleep(30)\n",
    );
    // The hung generators are stopped at --max-run-time (their kind is "timeout",
    // below); check_json's own deadline bounds the run.
    let (code, r) = check_json(t.root(), &["--max-run-time", "1"]);
    assert_eq!(code, 1, "{r:#}");
    for good in paths(&r, "generators")
        .iter()
        .filter(|p| p.starts_with("good/"))
    {
        assert_eq!(status(&r, good), "pass", "{good}: {r:#}");
    }
    assert_eq!(r["summary"]["passed"], 8, "{r:#}");
    assert_eq!(r["summary"]["failed"], 4, "{r:#}");
    let kind = |p: &str| {
        generator(&r, p)["error"]["kind"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(kind("bad/boom.py"), "exception");
    let tb = generator(&r, "bad/boom.py")["error"]["traceback"]
        .as_str()
        .unwrap_or("");
    assert!(tb.contains("ZeroDivisionError"), "{r:#}");
    assert_eq!(kind("bad/crash.sh"), "exit");
    assert_eq!(kind("bad/hang.sh"), "timeout");
    assert_eq!(kind("bad/hang.py"), "timeout");
    for hung in ["bad/hang.sh", "bad/hang.py"] {
        let d = generator(&r, hung)["duration_seconds"].as_f64().unwrap();
        assert!((0.9..10.0).contains(&d), "{hung} took {d}s");
    }

    // Text: the failures with their reason; no progress drawing when stderr is a pipe.
    let run = check(t.root(), &["--max-run-time", "1"]);
    assert_eq!(run.code, 1);
    let root = t.root().display().to_string();
    assert!(
        run.stdout
            .contains(&format!("  {root}/bad/hang.sh: error[timeout]: ")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("  {root}/bad/boom.py: error[exception]: ")),
        "{}",
        run.stdout
    );
    assert!(!run.stderr.contains("checking:"), "{}", run.stderr);
    assert!(!run.stderr.contains('\r'), "{}", run.stderr);
}

#[test]
fn progress_is_drawn_on_a_terminal_and_erased() {
    let t = Tree::new();
    t.write("ok.json", r#"[{"targets": ["a:1"]}]"#);
    // Takes ~1 s (killed at --max-run-time), past the indicator's 0.5 s delay.
    t.write_exec("slow.sh", "#!/bin/sh\nsleep 20\n");
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut child = Command::new(bin())
        .args(["check", "--max-run-time", "1"])
        .arg(t.root())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(pty.slave))
        .spawn()
        .expect("spawn httpsd");
    // Our copy of the slave end went into the child's stderr; once the child exits,
    // reading the master ends with EIO.
    let mut master = std::fs::File::from(pty.master);
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut master, &mut chunk) {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&buf).into_owned()
    });
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut stdout)
        .expect("read stdout");
    let status = child.wait().expect("wait");
    let terminal = reader.join().expect("reader");
    assert_eq!(status.code(), Some(1), "{stdout}");
    assert!(terminal.contains("checking: "), "{terminal:?}");
    assert!(terminal.contains("/2 done"), "{terminal:?}");
    // The last thing drawn erases the line, so the report starts on a clean line.
    let last = terminal.rfind("checking: ").expect("drawn");
    assert!(terminal[last..].contains("\r\x1b[2K"), "{terminal:?}");
    // The report itself never goes to the terminal's stderr.
    assert!(!terminal.contains("run generator"), "{terminal:?}");
    assert!(stdout.contains("error[timeout]"), "{stdout}");
}

#[test]
fn a_python_that_cannot_start_fails_its_generators_not_the_static_ones() {
    let t = Tree::new();
    t.write("ok.json", r#"[{"targets": ["a:1"]}]"#);
    t.write(
        "gen.py",
        "def generate_targets():\n    return [{'targets': ['b:1']}]\n",
    );
    let (code, r) = check_json(t.root(), &["--python", "/nonexistent/python3"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(status(&r, "ok.json"), "pass");
    let e = &generator(&r, "gen.py")["error"];
    assert!(
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("/nonexistent/python3"),
        "{r:#}"
    );
}

/// Python generators run in batches (one round trip per batch, not per file), yet each
/// file keeps its own timeout, result and run time: with one worker, a hanging and a
/// crashing file in the middle of many fail alone and everything after them still
/// runs, in check mode.
#[test]
fn python_batches_isolate_a_hanging_and_a_crashing_generator() {
    require_python();
    let t = Tree::new();
    for i in 0..40 {
        let body = match i {
            13 => "import time\ndef generate_targets():\n    time.sleep(30)\n".to_string(),
            27 => "import os\ndef generate_targets():\n    os._exit(3)\n".to_string(),
            // Removes the variable: the files after it must still see it.
            7 => "import os\ndef generate_targets():\n    del os.environ['PROMETHEUS_HTTP_SD_IS_TEST']\n    \
                  return [{'targets': ['10.0.0.7:9100']}]\n"
                .to_string(),
            // Fails unless it sees check mode at import and at call time.
            _ => format!(
                "import os\nassert os.environ.get('PROMETHEUS_HTTP_SD_IS_TEST') == '1'\n\
                 def generate_targets():\n    assert os.environ.get('PROMETHEUS_HTTP_SD_IS_TEST') == '1'\n    \
                 return [{{'targets': ['10.0.0.{i}:9100']}}]\n"
            ),
        };
        t.write(&format!("many/p{i:02}.py"), body);
    }
    let (code, r) = check_json(t.root(), &["--max-run-time", "1", "--python-workers", "1"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["summary"]["passed"], 38, "{r:#}");
    assert_eq!(r["summary"]["failed"], 2, "{r:#}");
    let kind = |p: &str| {
        generator(&r, p)["error"]["kind"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(kind("many/p13.py"), "timeout", "{r:#}");
    assert_eq!(kind("many/p27.py"), "worker_died", "{r:#}");
    let hung = generator(&r, "many/p13.py")["duration_seconds"]
        .as_f64()
        .unwrap();
    assert!((0.9..10.0).contains(&hung), "the hanging file took {hung}s");
    let message = generator(&r, "many/p27.py")["error"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(message.contains("exited with status 3"), "{message}");
    for i in (0..40).filter(|i| ![13, 27].contains(i)) {
        let p = format!("many/p{i:02}.py");
        assert_eq!(status(&r, &p), "pass", "{p}: {r:#}");
        let d = generator(&r, &p)["duration_seconds"].as_f64().unwrap();
        assert!(d < 0.9, "{p} took {d}s: the hang was charged to it");
    }
    assert_eq!(r["summary"]["targets"], 38, "{r:#}");
}

/// 30 generators that each print a line when imported and one when run.
fn talking_tree() -> Tree {
    let t = Tree::new();
    for i in 0..30 {
        t.write(
            &format!("talk/p{i:02}.py"),
            format!(
                "import sys\nprint('hello from p{i:02}')\n\
                 def generate_targets():\n    sys.stderr.write('stderr of p{i:02}\\n')\n    \
                 return [{{'targets': ['10.0.0.{i}:9100']}}]\n"
            ),
        );
    }
    t
}

/// `check` of the whole tree with JSON logs and one Python worker: the 30 files of
/// [`talking_tree`] run in a few batches, many generators per reply.
fn check_with_one_worker(t: &Tree) -> Run {
    let root = t.root().display().to_string();
    httpsd(
        t.root(),
        &[
            "--log-format",
            "json",
            "check",
            &root,
            "--python-workers",
            "1",
        ],
    )
}

/// The generators' output lines in a JSON log.
fn python_lines(run: &Run) -> Vec<Value> {
    run.stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "httpsd::python")
        .collect()
}

#[test]
fn python_output_is_logged_under_the_generator_that_printed_it() {
    require_python();
    let t = talking_tree();
    let run = check_with_one_worker(&t);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = python_lines(&run);
    assert_eq!(lines.len(), 60, "two lines per generator: {}", run.stderr);
    for v in &lines {
        let message = v["message"].as_str().unwrap_or("");
        let name = message.rsplit(' ').next().unwrap_or("");
        assert_eq!(
            v["generator"],
            format!("talk/{name}.py"),
            "output attributed to the wrong generator: {v}"
        );
    }
    assert!(
        !run.stderr.contains("httpsd-generator"),
        "the marks are not logged"
    );
}

/// `check` has the last result before the batch hands its worker back: what the last
/// generators printed is still in the worker's pipe when check is done, and is logged
/// before the worker is killed. The loss was a race (about 1 run in 20 here, more under
/// load), so the check runs 16 times, 8 at once.
#[test]
fn the_last_generators_output_is_logged_before_check_exits() {
    require_python();
    let t = talking_tree();
    for round in 0..2 {
        let runs: Vec<Run> = std::thread::scope(|scope| {
            let checks: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| check_with_one_worker(&t)))
                .collect();
            checks.into_iter().map(|c| c.join().unwrap()).collect()
        });
        for run in runs {
            assert_eq!(run.code, 0, "{}", run.stderr);
            let lines = python_lines(&run);
            assert_eq!(lines.len(), 60, "round {round}: {}", run.stderr);
        }
    }
}

/// Forked Python workers (check starts one interpreter and forks the others from it)
/// are not httpsd's children, yet a generator that kills one is reported with its exit
/// status like any other, whichever worker dies first.
#[test]
fn forked_python_workers_report_their_exit_status() {
    require_python();
    let t = Tree::new();
    for i in 0..4 {
        t.write(
            &format!("crash/c{i}.py"),
            format!(
                "import os\ndef generate_targets():\n    os._exit({})\n",
                11 + i
            ),
        );
    }
    t.write(
        "ok.py",
        "def generate_targets():\n    return [{'targets': ['a:1']}]\n",
    );
    let (code, r) = check_json(t.root(), &["--python-workers", "2"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(status(&r, "ok.py"), "pass", "{r:#}");
    for i in 0..4 {
        let e = &generator(&r, &format!("crash/c{i}.py"))["error"];
        assert_eq!(e["kind"], "worker_died", "{r:#}");
        let message = e["message"].as_str().unwrap_or("");
        assert!(
            message.contains(&format!("exited with status {}", 11 + i)),
            "c{i}.py: {message}"
        );
    }
}

/// Every worker, the forked copies included, dies when `check` is killed with SIGKILL,
/// even while busy in a generator that never returns.
#[test]
fn python_workers_die_with_a_killed_check_even_while_busy() {
    require_python();
    let t = Tree::new();
    for i in 0..2 {
        t.write(
            &format!("hang/h{i}.py"),
            "import time\ndef generate_targets():\n    time.sleep(3600)\n",
        );
    }
    let root = t.root().display().to_string();
    let mut child = Command::new(bin())
        .args([
            "check",
            &root,
            "--python-workers",
            "2",
            "--max-run-time",
            "60",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn httpsd");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Workers are the descendants running the runner (a pyenv shim on the way to the
    // interpreter has processes of its own).
    let is_worker = |p: &u32| {
        std::fs::read(format!("/proc/{p}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains("httpsd-runner"))
    };
    let workers = loop {
        let found: Vec<u32> = live_descendants(pid)
            .into_iter()
            .filter(is_worker)
            .collect();
        if found.len() >= 2 {
            break found;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("two Python workers did not start within 20 s: {found:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Let both workers enter their hanging generator.
    std::thread::sleep(Duration::from_millis(1000));
    child.kill().expect("SIGKILL httpsd");
    child.wait().expect("reap httpsd");
    let deadline = Instant::now() + Duration::from_secs(10);
    let alive = |p: &u32| is_alive(*p);
    while workers.iter().any(alive) {
        assert!(
            Instant::now() < deadline,
            "workers {:?} outlived the killed check by 10 s",
            workers.iter().filter(|p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Batches are queued in a worker ahead of time; when a generator breaks its worker's
/// channel (it closes every inherited fd), the batches queued behind it run on another
/// worker: every other generator runs exactly once and passes.
#[test]
fn queued_batches_run_once_elsewhere_when_a_worker_breaks() {
    require_python();
    let t = Tree::new();
    let ran = t.root().join("_ran.log");
    for i in 0..60 {
        let body = if i == 5 {
            "import os\ndef generate_targets():\n    os.closerange(3, 65536)\n    return []\n"
                .to_string()
        } else {
            format!(
                "import os\ndef generate_targets():\n    fd = os.open({ran:?}, os.O_WRONLY | os.O_APPEND | os.O_CREAT)\n    \
                 os.write(fd, b'p{i:02}\\n')\n    os.close(fd)\n    return [{{'targets': ['10.0.0.{i}:9100']}}]\n",
                ran = ran.display().to_string()
            )
        };
        t.write(&format!("many/p{i:02}.py"), body);
    }
    let (code, r) = check_json(t.root(), &["--python-workers", "1", "--max-run-time", "10"]);
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(status(&r, "many/p05.py"), "fail", "{r:#}");
    assert_eq!(r["summary"]["passed"], 59, "{r:#}");
    let log = std::fs::read_to_string(&ran).expect("the generators' log");
    let mut names: Vec<&str> = log.lines().collect();
    names.sort_unstable();
    let expected: Vec<String> = (0..60)
        .filter(|&i| i != 5)
        .map(|i| format!("p{i:02}"))
        .collect();
    assert_eq!(names, expected, "each generator must run exactly once");
}

/// Runs `httpsd check ROOT` with `XDG_CACHE_HOME` set; returns the exit code.
fn check_with_cache_home(root: &Path, cache_home: &Path) -> i32 {
    let out = Command::new(bin())
        .args([
            "check",
            &root.display().to_string(),
            "--python-workers",
            "2",
        ])
        .env("XDG_CACHE_HOME", cache_home)
        .stdin(Stdio::null())
        .output()
        .expect("run httpsd check");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.code().unwrap_or(-1)
}

/// The workers' runner is compiled once per interpreter and kept in httpsd's cache
/// directory: reused while valid, written again when unreadable, and a cache
/// directory that cannot be made costs nothing but the compilation.
#[test]
fn the_runner_code_is_cached_and_rebuilt_when_unreadable() {
    use std::os::unix::fs::MetadataExt;
    require_python();
    let t = Tree::new();
    t.write(
        "ok.py",
        "def generate_targets():\n    return [{'targets': ['a:1']}]\n",
    );
    let home = tempfile::tempdir().unwrap();
    check_with_cache_home(t.root(), home.path());
    let dir = home.path().join("httpsd");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the cache directory")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(files.len(), 1, "one cached runner: {files:?}");
    let cached = &files[0];
    let name = cached.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("runner-") && name.ends_with(".bin"),
        "{name}"
    );
    let first = std::fs::metadata(cached).unwrap();

    // Valid: used as is, not written again.
    check_with_cache_home(t.root(), home.path());
    assert_eq!(
        std::fs::metadata(cached).unwrap().ino(),
        first.ino(),
        "rewritten"
    );

    // Unreadable: compiled and written again.
    std::fs::write(cached, b"not a code object").unwrap();
    check_with_cache_home(t.root(), home.path());
    let again = std::fs::read(cached).unwrap();
    assert!(again.len() > 1000 && again != b"not a code object");

    // No usable cache directory (a file is in the way): checks still pass.
    let blocked = tempfile::tempdir().unwrap();
    std::fs::write(blocked.path().join("httpsd"), b"a file").unwrap();
    check_with_cache_home(t.root(), blocked.path());
}
