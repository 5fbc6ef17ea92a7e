//! Python generators: a supervised pool of long-lived Python worker processes.
//!
//! Each worker runs the small runner script embedded below (`python/runner.py`) and
//! serves one call at a time over its own stdin/stdout, one JSON object per line.
//! The script moves that channel off fds 0 and 1 before any user code runs, so what
//! generators print lands on the worker's stderr, which we log tagged with the
//! generator. Every worker leads its own process group: a call that outlives
//! `--max-run-time`, a worker that dies or breaks the protocol, or a worker that hit
//! `MemoryError` is killed with its whole group and replaced in the background;
//! only the call it held fails.

use std::collections::{HashSet, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

use super::{RunMode, RunnerSettings};
use crate::error::{ErrorKind, GeneratorError};
use crate::params::Params;
use crate::tree::GeneratorFile;

/// The runner script, sent to each worker at start.
const RUNNER_SOURCE: &str = include_str!("python/runner.py");

/// What `python -c` runs: read the runner and its settings from stdin, start it.
const BOOT: &str = "import sys,json;s=json.loads(sys.stdin.buffer.readline());\
g={'__name__':'__httpsd_runner__','__file__':'<httpsd-runner>'};\
exec(compile(s.pop('script'),'<httpsd-runner>','exec'),g);g['main'](s)";

/// Largest JSON result a generator may return.
const MAX_RESULT: usize = 256 * 1024 * 1024;

/// Longest chunk of generator output logged as one line.
const MAX_OUTPUT_LINE: u64 = 4096;

/// Per call, generator output beyond this many lines or bytes is counted, not logged.
const OUTPUT_LOG_LINES: usize = 200;
const OUTPUT_LOG_BYTES: usize = 64 * 1024;

/// Lines of output kept to explain a worker's death.
const OUTPUT_TAIL_LINES: usize = 40;

/// The environment variable the original sets in check mode.
const TEST_ENV: &str = "PROMETHEUS_HTTP_SD_IS_TEST";

/// The default pool size: twice the cores (generators mostly wait on the network),
/// between 4 and 32.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (cores * 2).clamp(4, 32)
}

/// Runs `.py` generators on a pool of Python workers.
pub struct PythonRunner {
    pool: Option<Arc<Pool>>,
}

impl PythonRunner {
    /// Starts the pool once one worker answered its handshake; fails with a clear
    /// message when the interpreter is missing or broken.
    pub async fn start(settings: &RunnerSettings) -> Result<PythonRunner, GeneratorError> {
        if settings.python_workers == 0 {
            tracing::info!("Python generators disabled (--python-workers 0)");
            return Ok(PythonRunner { pool: None });
        }
        // One worker proves the interpreter works; the others start in the background
        // so that a server (or `check`) is ready as soon as one handshake succeeded.
        let pool = Arc::new(Pool::new(settings));
        let h = match spawn_worker(&pool.config, &pool.live).await {
            Ok((worker, h)) => {
                pool.release(Some(worker));
                h
            }
            Err(e) => {
                pool.shutdown();
                return Err(GeneratorError::new(ErrorKind::Internal, e));
            }
        };
        for _ in 1..settings.python_workers {
            pool.refill();
        }
        tracing::info!(
            python = %h.python,
            executable = %h.executable,
            workers = settings.python_workers,
            max_run_time = settings.max_run_time.as_secs_f64(),
            "Python worker pool ready"
        );
        Ok(PythonRunner { pool: Some(pool) })
    }

    /// Runs one generator on a free worker and returns its raw JSON result.
    ///
    /// The call runs in its own task, so a caller that gives up (a client that
    /// disconnects) never leaves a worker half-way through a call.
    pub async fn run(
        &self,
        generator: &GeneratorFile,
        params: &Params,
        mode: RunMode,
    ) -> Result<serde_json::Value, GeneratorError> {
        let Some(pool) = &self.pool else {
            return Err(GeneratorError::new(
                ErrorKind::Unsupported,
                format!(
                    "{}: Python generators are disabled (--python-workers 0)",
                    generator.rel
                ),
            ));
        };
        let call = Call {
            rel: generator.rel.clone(),
            path: generator.abs.to_string_lossy().into_owned(),
            params: match mode {
                RunMode::Serve => params.to_json(),
                RunMode::Check => serde_json::Value::Object(Default::default()),
            },
            check: mode == RunMode::Check,
        };
        let rel = call.rel.clone();
        let result = tokio::spawn(pool.clone().call(call))
            .await
            .unwrap_or_else(|e| {
                Err(GeneratorError::new(
                    ErrorKind::Internal,
                    format!("{rel}: the Python call failed: {e}"),
                ))
            });
        if let Err(GeneratorError {
            kind,
            message,
            traceback: Some(tb),
        }) = &result
        {
            tracing::warn!(generator = %rel, ?kind, traceback = %tb.trim_end(), "{message}");
        }
        result
    }

    /// Kills every worker (and its process group).
    pub async fn shutdown(&self) {
        if let Some(pool) = &self.pool {
            pool.shutdown();
        }
    }
}

/// Fixed settings of the pool.
#[derive(Debug, Clone)]
struct PoolConfig {
    python: PathBuf,
    root: PathBuf,
    max_run_time: Duration,
    startup_timeout: Duration,
    memory_limit: u64,
}

/// The pool: a fixed number of slots, each holding an idle worker or nothing (a
/// worker being replaced or started on demand).
struct Pool {
    config: PoolConfig,
    size: usize,
    slots_tx: mpsc::Sender<Option<Worker>>,
    slots_rx: tokio::sync::Mutex<mpsc::Receiver<Option<Worker>>>,
    /// Process groups of all live workers, for shutdown.
    live: Arc<Mutex<HashSet<i32>>>,
    closed: AtomicBool,
    next_id: AtomicU64,
}

/// One request to a worker.
struct Call {
    rel: String,
    path: String,
    params: serde_json::Value,
    check: bool,
}

#[derive(Serialize)]
struct Request<'a> {
    id: u64,
    path: &'a str,
    params: &'a serde_json::Value,
    check: bool,
}

/// A worker's answer to one request.
#[derive(Deserialize)]
struct Reply {
    id: u64,
    ok: bool,
    #[serde(default)]
    result: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    traceback: Option<String>,
    #[serde(default)]
    recycle: bool,
    /// The script's own time in the worker (import, call, JSON encoding).
    #[serde(default)]
    secs: f64,
}

/// The handshake line of a worker.
#[derive(Deserialize)]
struct Hello {
    ready: bool,
    python: String,
    executable: String,
}

/// Why a worker stopped answering.
enum Failure {
    /// It exited or closed the channel.
    Died(String),
    /// It answered something that is not the protocol.
    Protocol(String),
}

impl Pool {
    fn new(settings: &RunnerSettings) -> Pool {
        let size = settings.python_workers;
        let (slots_tx, slots_rx) = mpsc::channel(size);
        Pool {
            config: PoolConfig {
                python: settings.python.clone(),
                root: settings.root.clone(),
                max_run_time: settings.max_run_time,
                startup_timeout: settings
                    .max_run_time
                    .clamp(Duration::from_secs(5), Duration::from_secs(30)),
                memory_limit: settings.python_memory_limit,
            },
            size,
            slots_tx,
            slots_rx: tokio::sync::Mutex::new(slots_rx),
            live: Arc::new(Mutex::new(HashSet::new())),
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        }
    }

    /// Returns a slot to the pool.
    fn release(&self, slot: Option<Worker>) {
        let slot = match slot {
            Some(w) if self.closed.load(Ordering::SeqCst) => {
                self.retire(w);
                None
            }
            s => s,
        };
        // Never full: there are exactly `size` slots and this one was taken out.
        if let Err(
            mpsc::error::TrySendError::Full(Some(w)) | mpsc::error::TrySendError::Closed(Some(w)),
        ) = self.slots_tx.try_send(slot)
        {
            self.retire(w);
        }
    }

    /// Kills a worker with its process group; reaping happens in the background.
    fn retire(&self, worker: Worker) {
        worker.kill(&self.live);
    }

    /// Starts a replacement for a retired worker in the background.
    fn refill(self: &Arc<Self>) {
        let pool = self.clone();
        tokio::spawn(async move {
            if pool.closed.load(Ordering::SeqCst) {
                pool.release(None);
                return;
            }
            match spawn_worker(&pool.config, &pool.live).await {
                Ok((w, _)) => pool.release(Some(w)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot replace a Python worker; will retry on the next call");
                    pool.release(None);
                }
            }
        });
    }

    fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let groups: Vec<i32> = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for pgid in groups {
            kill_group(pgid);
        }
    }

    /// One call, from waiting for a worker to mapping its answer.
    async fn call(self: Arc<Self>, call: Call) -> Result<serde_json::Value, GeneratorError> {
        let rel = call.rel.as_str();
        let limit = self.config.max_run_time;
        if self.closed.load(Ordering::SeqCst) {
            return Err(GeneratorError::new(
                ErrorKind::Internal,
                format!("{rel}: the Python worker pool is shutting down"),
            ));
        }
        let slot = async { self.slots_rx.lock().await.recv().await };
        let slot = match tokio::time::timeout(limit, slot).await {
            Ok(Some(slot)) => slot,
            Ok(None) => {
                return Err(GeneratorError::new(
                    ErrorKind::Internal,
                    format!("{rel}: the Python worker pool is closed"),
                ));
            }
            Err(_) => {
                return Err(GeneratorError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{rel}: no Python worker became free within {}s (all {} busy)",
                        limit.as_secs_f64(),
                        self.size
                    ),
                ));
            }
        };
        let mut worker = match slot {
            Some(w) => w,
            None => match spawn_worker(&self.config, &self.live).await {
                Ok((w, _)) => w,
                Err(e) => {
                    self.release(None);
                    return Err(GeneratorError::new(
                        ErrorKind::Internal,
                        format!("{rel}: cannot start a Python worker: {e}"),
                    ));
                }
            },
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line = match serde_json::to_vec(&Request {
            id,
            path: &call.path,
            params: &call.params,
            check: call.check,
        }) {
            Ok(l) => l,
            Err(e) => {
                self.release(Some(worker));
                return Err(GeneratorError::new(
                    ErrorKind::Internal,
                    format!("{rel}: cannot encode the request: {e}"),
                ));
            }
        };
        line.push(b'\n');
        let pid = worker.pid;
        let sent = std::time::Instant::now();
        let outcome = tokio::time::timeout(limit, worker.call(&line, rel)).await;
        worker.output.end_call(rel, pid);
        match outcome {
            Ok(Ok(reply)) if reply.id == id => {
                let round_trip = sent.elapsed().as_secs_f64();
                tracing::debug!(
                    generator = %rel,
                    pid,
                    script_seconds = reply.secs,
                    overhead_seconds = (round_trip - reply.secs).max(0.0),
                    "Python call"
                );
                if reply.recycle {
                    tracing::info!(generator = %rel, pid, "replacing a Python worker after MemoryError");
                    self.retire(worker);
                    self.refill();
                } else {
                    self.release(Some(worker));
                }
                reply_result(rel, reply)
            }
            Ok(Ok(reply)) => {
                self.retire(worker);
                self.refill();
                Err(GeneratorError::new(
                    ErrorKind::Internal,
                    format!(
                        "{rel}: the Python worker answered request {} instead of {id}; worker replaced",
                        reply.id
                    ),
                ))
            }
            Ok(Err(Failure::Protocol(why))) => {
                let tail = worker.output.take_tail();
                self.retire(worker);
                self.refill();
                Err(with_tail(
                    GeneratorError::new(
                        ErrorKind::Internal,
                        format!(
                            "{rel}: the Python worker broke the protocol ({why}); worker replaced"
                        ),
                    ),
                    tail,
                ))
            }
            Ok(Err(Failure::Died(why))) => {
                let tail = self.retire_and_wait(worker).await;
                self.refill();
                tracing::warn!(generator = %rel, pid, reason = %why, "a Python worker died; replacing it");
                Err(with_tail(
                    GeneratorError::new(
                        ErrorKind::WorkerDied,
                        format!("{rel}: the Python worker running it died ({why})"),
                    ),
                    tail,
                ))
            }
            Err(_) => {
                self.retire(worker);
                self.refill();
                tracing::warn!(generator = %rel, pid, "generator ran past --max-run-time; its Python worker was killed");
                Err(GeneratorError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{rel}: still running after {}s (--max-run-time); its Python worker was killed",
                        limit.as_secs_f64()
                    ),
                ))
            }
        }
    }

    /// Kills a dead worker with its group, gives its output pump a moment to drain
    /// (the last lines often explain the death, e.g. a segfault's traceback), and
    /// returns those lines.
    async fn retire_and_wait(&self, mut worker: Worker) -> String {
        kill_group(worker.pid);
        if let Some(pump) = worker.pump.take() {
            let _ = tokio::time::timeout(Duration::from_millis(300), pump).await;
        }
        let tail = worker.output.take_tail();
        self.retire(worker);
        tail
    }
}

fn with_tail(e: GeneratorError, tail: String) -> GeneratorError {
    if tail.is_empty() {
        e
    } else {
        e.with_traceback(format!("last output of the worker:\n{tail}"))
    }
}

fn reply_result(rel: &str, reply: Reply) -> Result<serde_json::Value, GeneratorError> {
    if reply.ok {
        return reply.result.ok_or_else(|| {
            GeneratorError::new(
                ErrorKind::Internal,
                format!("{rel}: the Python worker sent no result"),
            )
        });
    }
    let message = reply.message.unwrap_or_else(|| "unknown error".into());
    let e = GeneratorError::new(ErrorKind::Exception, format!("{rel}: {message}"));
    Err(match reply.traceback {
        Some(tb) if !tb.is_empty() => e.with_traceback(tb),
        _ => e,
    })
}

/// A live worker process and its channel.
struct Worker {
    pid: i32,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    output: Arc<Output>,
    pump: Option<tokio::task::JoinHandle<()>>,
}

impl Worker {
    /// Sends one request and reads its reply, watching for the process's exit.
    async fn call(&mut self, line: &[u8], rel: &str) -> Result<Reply, Failure> {
        self.output.begin_call(rel);
        if let Err(e) = self.stdin.write_all(line).await {
            return Err(self.died(format!("cannot send it the request: {e}")).await);
        }
        let mut buf = Vec::with_capacity(256);
        let read = read_line(&mut self.stdout, &mut buf, MAX_RESULT as u64 + 4096);
        let status = tokio::select! {
            biased;
            r = read => match r {
                Ok(true) => {
                    return serde_json::from_slice::<Reply>(&buf).map_err(|e| {
                        Failure::Protocol(format!("unreadable reply: {e}"))
                    });
                }
                Ok(false) if buf.is_empty() => None,
                Ok(false) => return Err(Failure::Protocol("reply too large or cut short".into())),
                Err(e) => return Err(self.died(format!("cannot read its reply: {e}")).await),
            },
            status = self.child.wait() => status.ok(),
        };
        match status {
            Some(s) => Err(Failure::Died(describe_exit(s))),
            None => Err(self.died("it closed its channel".to_string()).await),
        }
    }

    /// The exit status when the process is gone (or going), else `fallback`.
    async fn died(&mut self, fallback: String) -> Failure {
        match tokio::time::timeout(Duration::from_millis(200), self.child.wait()).await {
            Ok(Ok(status)) => Failure::Died(describe_exit(status)),
            _ => Failure::Died(fallback),
        }
    }

    fn kill(mut self, live: &Mutex<HashSet<i32>>) {
        live.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.pid);
        kill_group(self.pid);
        let _ = self.child.start_kill();
        tokio::spawn(async move {
            let _ = self.child.wait().await;
        });
    }
}

/// Reads one line (without the newline) of at most `limit` bytes. `Ok(true)` when
/// a whole line was read; `Ok(false)` at end of input or when the line is too long.
async fn read_line(
    reader: &mut BufReader<ChildStdout>,
    buf: &mut Vec<u8>,
    limit: u64,
) -> std::io::Result<bool> {
    let n = reader.take(limit).read_until(b'\n', buf).await?;
    if n > 0 && buf.last() == Some(&b'\n') {
        buf.pop();
        Ok(true)
    } else {
        Ok(false)
    }
}

fn describe_exit(status: ExitStatus) -> String {
    if let Some(sig) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| format!("signal {sig}"));
        format!("killed by {name}")
    } else if let Some(code) = status.code() {
        format!("exited with status {code}")
    } else {
        status.to_string()
    }
}

fn kill_group(pgid: i32) {
    if pgid > 1 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Starts one worker and waits for its handshake.
async fn spawn_worker(
    config: &PoolConfig,
    live: &Arc<Mutex<HashSet<i32>>>,
) -> Result<(Worker, Hello), String> {
    let python = config.python.display().to_string();
    let mut child = Command::new(&config.python)
        .arg("-c")
        .arg(BOOT)
        .env_remove(TEST_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the Python interpreter {python:?} (--python): {e}"))?;
    let pid = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| format!("the Python interpreter {python:?} exited at once"))?;
    live.lock().unwrap_or_else(|e| e.into_inner()).insert(pid);
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        kill_group(pid);
        return Err("cannot open pipes to the Python interpreter".into());
    };
    let output = Arc::new(Output::new(pid));
    let pump = tokio::spawn(pump_output(stderr, output.clone()));
    let mut worker = Worker {
        pid,
        child,
        stdin,
        stdout: BufReader::with_capacity(64 * 1024, stdout),
        output,
        pump: Some(pump),
    };
    match tokio::time::timeout(
        config.startup_timeout,
        handshake(config, &mut worker, &python),
    )
    .await
    {
        Ok(Ok(hello)) => Ok((worker, hello)),
        Ok(Err(e)) => {
            kill_group(pid);
            if let Some(p) = worker.pump.take() {
                let _ = tokio::time::timeout(Duration::from_millis(500), p).await;
            }
            let tail = worker.output.take_tail();
            worker.kill(live);
            Err(if tail.is_empty() {
                e
            } else {
                format!("{e}; it printed:\n{tail}")
            })
        }
        Err(_) => {
            worker.kill(live);
            Err(format!(
                "the Python interpreter {python:?} did not start within {}s",
                config.startup_timeout.as_secs_f64()
            ))
        }
    }
}

async fn handshake(
    config: &PoolConfig,
    worker: &mut Worker,
    python: &str,
) -> Result<Hello, String> {
    let mut settings = serde_json::to_vec(&serde_json::json!({
        "script": RUNNER_SOURCE,
        "root": config.root.to_string_lossy(),
        "ppid": std::process::id(),
        "memory_limit": config.memory_limit,
        "max_result": MAX_RESULT,
    }))
    .map_err(|e| format!("cannot encode the worker settings: {e}"))?;
    settings.push(b'\n');
    let _ = worker.stdin.write_all(&settings).await;
    // Tolerate a few lines before the handshake (a noisy sitecustomize or .pth file):
    // they are logged as the worker's output.
    let mut buf = Vec::new();
    let mut printed: Option<String> = None;
    for _ in 0..50 {
        buf.clear();
        let status = tokio::select! {
            biased;
            r = read_line(&mut worker.stdout, &mut buf, 64 * 1024) => match r {
                Ok(true) => {
                    match serde_json::from_slice::<Hello>(&buf) {
                        Ok(h) if h.ready => return Ok(h),
                        _ => {
                            let text = String::from_utf8_lossy(&buf).into_owned();
                            printed.get_or_insert_with(|| text.chars().take(200).collect());
                            worker.output.line(&text);
                            continue;
                        }
                    }
                }
                _ => worker.child.wait().await.ok(),
            },
            status = worker.child.wait() => status.ok(),
        };
        let printed = printed.map_or_else(String::new, |p| format!(" after printing {p:?}"));
        return Err(format!(
            "{python:?} is not a working Python 3 interpreter (--python): it {}{printed}",
            status.map_or_else(|| "closed its output".to_string(), describe_exit)
        ));
    }
    Err(format!(
        "{python:?} is not a working Python 3 interpreter (--python): it printed {:?} instead of the handshake",
        printed.unwrap_or_default()
    ))
}

/// Generator output of one worker: who is running, what was logged, the tail.
struct Output {
    pid: i32,
    state: Mutex<OutputState>,
}

#[derive(Default)]
struct OutputState {
    generator: String,
    lines: usize,
    bytes: usize,
    suppressed_bytes: usize,
    tail: VecDeque<String>,
}

impl Output {
    fn new(pid: i32) -> Output {
        Output {
            pid,
            state: Mutex::new(OutputState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutputState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin_call(&self, rel: &str) {
        let mut s = self.lock();
        if s.generator != rel {
            s.generator = rel.to_string();
        }
        s.lines = 0;
        s.bytes = 0;
        s.suppressed_bytes = 0;
        s.tail.clear();
    }

    fn end_call(&self, rel: &str, pid: i32) {
        let suppressed = std::mem::take(&mut self.lock().suppressed_bytes);
        if suppressed > 0 {
            tracing::warn!(
                generator = %rel,
                pid,
                "generator printed {suppressed} more bytes of output that were not logged"
            );
        }
    }

    fn take_tail(&self) -> String {
        let mut s = self.lock();
        let lines: Vec<String> = s.tail.drain(..).collect();
        lines.join("\n")
    }

    /// Records one line of output and logs it unless this call printed too much.
    fn line(&self, text: &str) {
        let (generator, log) = {
            let mut s = self.lock();
            if s.tail.len() == OUTPUT_TAIL_LINES {
                s.tail.pop_front();
            }
            s.tail.push_back(text.to_string());
            if s.lines < OUTPUT_LOG_LINES && s.bytes < OUTPUT_LOG_BYTES {
                s.lines += 1;
                s.bytes += text.len();
                (s.generator.clone(), true)
            } else {
                s.suppressed_bytes += text.len() + 1;
                (String::new(), false)
            }
        };
        if log {
            if generator.is_empty() {
                tracing::info!(target: "httpsd::python", pid = self.pid, "{text}");
            } else {
                tracing::info!(target: "httpsd::python", generator = %generator, pid = self.pid, "{text}");
            }
        }
    }
}

/// Reads a worker's stderr (where user prints go) until it closes.
async fn pump_output(stderr: ChildStderr, output: Arc<Output>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stderr);
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        match (&mut reader)
            .take(MAX_OUTPUT_LINE)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        output.line(&String::from_utf8_lossy(&buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(root: &std::path::Path) -> RunnerSettings {
        RunnerSettings {
            root: root.to_path_buf(),
            max_run_time: Duration::from_secs(10),
            python: "python3".into(),
            python_workers: 1,
            python_memory_limit: 0,
        }
    }

    /// Check mode (used by `httpsd check`): the test variable is visible at import
    /// and call time, `test_generate_targets()` wins when defined, no parameters.
    #[tokio::test]
    async fn check_mode_uses_test_generate_targets() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(
            root.join("with_test.py"),
            "import os\nAT_IMPORT = os.environ.get('PROMETHEUS_HTTP_SD_IS_TEST', 'unset')\n\
             def generate_targets(**p):\n    return [{'targets': ['serve:1'], 'labels': {'import': AT_IMPORT, 'params': ','.join(p)}}]\n\
             def test_generate_targets():\n    return [{'targets': ['test:1'], 'labels': {'import': AT_IMPORT, 'call': os.environ.get('PROMETHEUS_HTTP_SD_IS_TEST', 'unset')}}]\n",
        )
        .unwrap();
        std::fs::write(
            root.join("without_test.py"),
            "def generate_targets(**p):\n    return [{'targets': ['plain:1'], 'labels': {'params': ','.join(p)}}]\n",
        )
        .unwrap();
        let listing = crate::tree::scan(&root);
        let find = |name: &str| {
            listing
                .generators
                .iter()
                .find(|g| g.rel == name)
                .cloned()
                .expect("generator found")
        };
        let runner = PythonRunner::start(&settings(&root))
            .await
            .expect("pool starts");
        let params = Params::from_pairs([("x", "1")]);
        let with_test = find("with_test.py");
        let without_test = find("without_test.py");

        let serve = runner
            .run(&with_test, &params, RunMode::Serve)
            .await
            .unwrap();
        assert_eq!(
            serve,
            serde_json::json!([{"targets": ["serve:1"], "labels": {"import": "unset", "params": "x"}}])
        );
        let check = runner
            .run(&with_test, &params, RunMode::Check)
            .await
            .unwrap();
        assert_eq!(
            check,
            serde_json::json!([{"targets": ["test:1"], "labels": {"import": "1", "call": "1"}}])
        );
        let check = runner
            .run(&without_test, &params, RunMode::Check)
            .await
            .unwrap();
        assert_eq!(
            check,
            serde_json::json!([{"targets": ["plain:1"], "labels": {"params": ""}}])
        );
        // Serving afterwards sees neither the variable nor a check-mode module.
        let serve = runner
            .run(&with_test, &params, RunMode::Serve)
            .await
            .unwrap();
        assert_eq!(serve[0]["labels"]["import"], "unset");
        runner.shutdown().await;
    }
}
