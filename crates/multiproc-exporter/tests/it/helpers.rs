//! Shared test plumbing: the Python prerequisites, real worker processes, the real
//! exporter binary on a free loopback port, a minimal HTTP client and output comparison.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// Path of a helper script under tests/it/py.
pub fn py_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/py")
        .join(name)
}

static PY_CHECK: Once = Once::new();

/// Fails loudly unless python3 with prometheus_client 0.26.x is available.
pub fn require_python() {
    PY_CHECK.call_once(|| {
        let out = Command::new("python3")
            .args(["-c", "import prometheus_client, importlib.metadata as m; print(m.version('prometheus_client'))"])
            .output();
        let msg = "these tests need python3 with prometheus_client 0.26.0: \
                   run `pip install prometheus-client==0.26.0`";
        match out {
            Ok(o) if o.status.success() => {
                let v = String::from_utf8_lossy(&o.stdout).trim().to_string();
                assert!(v.starts_with("0.26."), "{msg} (found prometheus_client {v})");
            }
            Ok(o) => panic!("{msg}\n{}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => panic!("{msg} (python3: {e})"),
        }
    });
}

/// Runs a helper script to completion and returns its stdout.
pub fn run_py(script: &str, args: &[&str]) -> String {
    run_py_env(script, args, &[])
}

/// [`run_py`] with more environment variables.
pub fn run_py_env(script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    require_python();
    let out = Command::new("python3")
        .arg(py_script(script))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// What the real Python collector serves (`text`, `openmetrics` or `sorted-text`).
pub fn oracle(dir: &Path, mode: &str) -> String {
    run_py("oracle.py", &[dir.to_str().expect("utf-8 path"), mode])
}

/// A free loopback port (bound and released; good enough for tests on loopback).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// The real exporter binary running as a child process.
pub struct Exporter {
    /// The child process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Reads `stderr` up to the line that says where the exporter listens (or its end),
/// byte by byte so that nothing after it is taken from a later reader; gives the pipe
/// back with the lines read. `None` when nothing came within `limit`: the caller kills
/// the child (a child left running would hold the test's output open).
pub fn first_log_line(mut stderr: ChildStderr, limit: Duration) -> Option<(String, ChildStderr)> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut byte = [0u8; 1];
        while let Ok(1) = stderr.read(&mut byte) {
            text.push(byte[0]);
            if byte[0] == b'\n' && listen_addr(&String::from_utf8_lossy(&text)).is_some() {
                break;
            }
        }
        let _ = tx.send((String::from_utf8_lossy(&text).into_owned(), stderr));
    });
    rx.recv_timeout(limit).ok()
}

/// The address in the exporter's `serving` log line (`listen=ADDR`, or `"listen":"ADDR"`
/// in JSON).
pub fn listen_addr(log: &str) -> Option<SocketAddr> {
    let line = log
        .lines()
        .find(|l| l.contains("multiproc-exporter serving"))?;
    let (_, rest) = line
        .split_once(" listen=")
        .or_else(|| line.split_once("\"listen\":\""))?;
    rest.split([' ', '"']).next()?.parse().ok()
}

/// Path of the exporter binary built by cargo for these tests.
pub fn exporter_bin() -> &'static str {
    env!("CARGO_BIN_EXE_multiproc-exporter")
}

impl Exporter {
    /// Starts the exporter on `dir` and waits until /healthz answers.
    pub fn start(dir: &Path, extra: &[&str]) -> Exporter {
        Exporter::start_env(dir, extra, &[])
    }

    /// [`Exporter::start`] with more environment variables.
    ///
    /// The exporter binds port 0 and the address is read from its first log line: a
    /// port picked here and bound later could be taken meanwhile by another test's
    /// server, which would then answer for this one.
    pub fn start_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Exporter {
        let mut child = Command::new(exporter_bin())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn exporter");
        let stderr = child.stderr.take().expect("stderr");
        let read = first_log_line(stderr, Duration::from_secs(10));
        let (line, addr) = match read {
            Some((line, stderr)) => {
                child.stderr = Some(stderr);
                let addr = listen_addr(&line);
                (line, addr)
            }
            None => (String::new(), None),
        };
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the exporter did not say where it listens within 10 s: {line:?}");
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok((200, _, _)) = try_get(addr, "/healthz", &[]) {
                return Exporter { child, addr };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the exporter listens on {addr} but /healthz does not answer");
    }

    /// Scrapes /metrics as text and returns the body.
    pub fn scrape(&self) -> String {
        let (status, _, body) = get(self.addr, "/metrics", &[]);
        assert_eq!(
            status,
            200,
            "scrape failed: {}",
            String::from_utf8_lossy(&body)
        );
        String::from_utf8(body).expect("utf-8 body")
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status, lower-cased headers and body of a GET.
pub type Resp = (u16, Vec<(String, String)>, Vec<u8>);

/// GET over HTTP/1.1 with `Connection: close`.
pub fn try_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let hdrs: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if hdrs
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Ok((status, hdrs, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// GET that must succeed at the transport level.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    try_get(addr, path, headers).expect("http get")
}

/// A header value of a response.
pub fn header<'a>(resp: &'a Resp, name: &str) -> Option<&'a str> {
    resp.1
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The exposition without the exporter's own `multiproc_exporter_*` families.
pub fn strip_own(text: &str) -> String {
    text.lines()
        .filter(|l| !l.contains("multiproc_exporter_"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The value of one sample line (exact `name{labels}` match), if present.
pub fn sample_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        if s == series { v.parse().ok() } else { None }
    })
}

fn parse_go_float(v: &str) -> Option<f64> {
    match v {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

/// Compares two expositions line by line after sorting; sample values may differ by a
/// relative 1e-9 (float summation order differs between directory order and ours).
pub fn assert_same_exposition(expected: &str, actual: &str) {
    let mut e: Vec<&str> = expected.lines().collect();
    let mut a: Vec<&str> = actual.lines().collect();
    e.sort_unstable();
    a.sort_unstable();
    assert_eq!(
        e.len(),
        a.len(),
        "line counts differ\nexpected:\n{expected}\nactual:\n{actual}"
    );
    // Sorting can separate lines whose values differ slightly; compare by series.
    let key = |l: &str| {
        l.rsplit_once(' ')
            .map(|(s, _)| s.to_string())
            .unwrap_or_default()
    };
    let mut e2: Vec<(String, &str)> = e.iter().map(|l| (key(l), *l)).collect();
    let mut a2: Vec<(String, &str)> = a.iter().map(|l| (key(l), *l)).collect();
    e2.sort();
    a2.sort();
    for ((ek, el), (ak, al)) in e2.iter().zip(&a2) {
        if el == al {
            continue;
        }
        assert_eq!(ek, ak, "series differ: {el:?} vs {al:?}");
        assert!(
            !el.starts_with('#'),
            "comment lines differ: {el:?} vs {al:?}"
        );
        let ev = el.rsplit_once(' ').and_then(|(_, v)| parse_go_float(v));
        let av = al.rsplit_once(' ').and_then(|(_, v)| parse_go_float(v));
        match (ev, av) {
            (Some(x), Some(y)) => assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
                "values differ beyond tolerance: {el:?} vs {al:?}"
            ),
            _ => panic!("lines differ: {el:?} vs {al:?}"),
        }
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A multiprocess directory written by `procs` real processes, `incs` increments each
/// (the `count` scenario of workers.py: `work_done_total{worker="all"}`).
pub fn counted_dir(procs: u32, incs: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    run_py(
        "workers.py",
        &[
            dir.path().to_str().expect("utf-8"),
            "count",
            &procs.to_string(),
            &incs.to_string(),
        ],
    );
    dir
}

/// Asserts that the exporter refuses each argument list at start (exit 1) with a message
/// holding the paired text.
pub fn assert_refused(dir: &Path, cases: &[(Vec<&str>, &str)]) {
    for (args, needle) in cases {
        let out = Command::new(exporter_bin())
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
