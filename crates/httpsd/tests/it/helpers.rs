//! Test helpers: run the real `httpsd` binary on a free loopback port, build target
//! trees in temporary directories, and make HTTP requests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_httpsd")
}

/// A temporary target tree.
pub struct Tree {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree {
            dir: tempfile::tempdir().expect("create temp dir"),
        }
    }

    /// The root path.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `content` to `rel` (creating directories); returns the path.
    pub fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create dirs");
        }
        std::fs::write(&p, content).expect("write file");
        p
    }

    /// Writes an executable file.
    pub fn write_exec(&self, rel: &str, content: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.write(rel, content);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    /// Creates a directory.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }
}

/// A running `httpsd` process, killed on drop.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` (or `https://` with TLS).
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Everything the process wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `httpsd serve ROOT -p 0 <extra>` and waits until it listens.
    pub fn serve(root: &Path, extra: &[&str]) -> Server {
        let mut args: Vec<String> = vec!["serve".into(), root.display().to_string()];
        args.extend(["-p".into(), "0".into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        Server::start(&args)
    }

    /// Starts the binary with `args` and waits for its "Serving on <scheme>://ADDR" line.
    pub fn start(args: &[String]) -> Server {
        Server::start_with_env(args, &[])
    }

    /// Like [`Server::start`], with extra environment variables.
    pub fn start_with_env(args: &[String], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(bin())
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn httpsd");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel::<(String, String)>();
        for stream in [
            Box::new(child.stderr.take().expect("stderr")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().expect("stdout")),
        ] {
            let log = log.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    // Log first: a test may read the log as soon as the address arrives.
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                    if let Some(i) = line.find("Serving on ") {
                        let rest = &line[i + "Serving on ".len()..];
                        if let Some((scheme, after)) = rest.split_once("://") {
                            let addr: String = after
                                .chars()
                                .take_while(|c| !c.is_whitespace() && *c != '/')
                                .collect();
                            let _ = tx.send((scheme.to_string(), addr));
                        }
                    }
                }
            });
        }
        let (scheme, addr) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "httpsd did not start listening within 30 s; log:\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Server {
            child: Some(child),
            base: format!("{scheme}://{addr}"),
            addr,
            log,
        }
    }

    /// Full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGTERM and waits for the exit status (bounded).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("httpsd did not exit within 40 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A copy of the log so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A shared HTTP client.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// A response reduced to what tests look at.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Content-Type header.
    pub content_type: String,
    /// Body text.
    pub body: String,
}

impl Resp {
    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// GET `url`.
pub async fn get(url: &str) -> Resp {
    get_with(url, &[]).await
}

/// The `Accept` header Prometheus sends: OpenMetrics first, text 0.0.4 as fallback.
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// GET `url` with extra request headers.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut request = client().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = r.text().await.expect("body");
    Resp {
        status,
        content_type,
        body,
    }
}

/// Polls `f` every 20 ms until it returns `Some`, or panics after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails loudly when `python3` is missing (tests never skip silently).
pub fn require_python() {
    let ok = Command::new("python3")
        .arg("-c")
        .arg("import sys; sys.exit(0)")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 is required for this test: install it (apt-get install -y python3)"
    );
}

/// Runs `python3 <args>` and returns its stdout; panics with its stderr when it fails.
pub fn python3_stdout(args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = Command::new("python3")
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Sends a raw `GET <target>` (no client-side normalisation of `..`) and returns
/// the status code and body.
pub fn raw_get(base: &str, target: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// State and parent pid of process `pid`, from `/proc/<pid>/stat` (`None` once gone).
fn proc_state(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.to_string();
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// True while `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    proc_state(pid).is_some_and(|(state, _)| state != "Z")
}

/// Live (not zombie) processes and their parents, from `/proc`.
fn live_processes() -> Vec<(u32, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        panic!("/proc is not readable: these tests need Linux");
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| proc_state(p).map(|(state, ppid)| (p, state, ppid)))
        .filter(|(_, state, _)| state != "Z")
        .map(|(p, _, ppid)| (p, ppid))
        .collect()
}

/// Live (not zombie) child processes of `pid`.
pub fn live_children(pid: u32) -> Vec<u32> {
    live_processes()
        .into_iter()
        .filter(|&(_, ppid)| ppid == pid)
        .map(|(p, _)| p)
        .collect()
}

/// Live (not zombie) descendants of `pid`: children, their children, and so on.
pub fn live_descendants(pid: u32) -> Vec<u32> {
    let all = live_processes();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(all.iter().filter(|&&(_, pp)| pp == parent).map(|&(p, _)| p));
        i += 1;
    }
    found.remove(0);
    found
}

/// Waits (up to 10 s) until `server`'s JSON log has at least `n` request-log lines
/// (target `httpsd::access`), and returns them all.
pub async fn access_log_lines(server: &Server, n: usize) -> Vec<serde_json::Value> {
    wait_for(Duration::from_secs(10), "request logs", || {
        let log = server.log_text();
        async move {
            let v: Vec<serde_json::Value> = log
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .filter(|v: &serde_json::Value| v["target"] == "httpsd::access")
                .collect();
            (v.len() >= n).then_some(v)
        }
    })
    .await
}
