//! Python generators: a supervised pool of long-lived Python worker processes.
//!
//! Each worker runs the small runner script embedded below (`python/runner.py`) and
//! serves one call at a time over its own stdin/stdout, one JSON object per line.
//! The script moves that channel off fds 0 and 1 before any user code runs, so what
//! generators print lands on the worker's stderr, which we log tagged with the
//! generator (the worker marks in that stream where each run starts and ends, see
//! `OUTPUT_MARK`). Every worker leads its own process group: a call that outlives
//! `--max-run-time`, a worker that dies or breaks the protocol, or a worker that hit
//! `MemoryError` is killed with its whole group and replaced in the background;
//! only the call it held fails.
//!
//! `check` sends batches of files instead of single calls (one round trip per batch);
//! the worker answers one line per file as each is done, so a file still fails alone
//! and the rest of its batch is run on another worker. `check` also starts a single
//! interpreter, which forks the other workers once it has loaded the runner
//! ([`Warmth::Forked`]). A pool for a tree without
//! Python starts lazily: its workers start on the calls that need them.

use std::collections::{HashSet, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::polled_pipe::PolledPipe;
use super::{RunMode, RunnerSettings};
use crate::error::{ErrorKind, GeneratorError};
use crate::params::Params;
use crate::tree::GeneratorFile;

/// The runner script, sent to each worker at start.
const RUNNER_SOURCE: &str = include_str!("python/runner.py");

/// What `python -c` runs: read the runner's length and source from stdin, then the
/// line naming httpsd's cache directory (empty: none), and start the runner (which
/// reads its settings line itself). Compiling the runner was a third of a worker's
/// start-up, so its code object is kept in the cache directory (`marshal`, as
/// Python keeps `.pyc` files), under a name and a header made of the interpreter's
/// bytecode magic number and a hash of the source: another Python or another runner
/// never loads it, and anything unreadable is compiled and written again (to a
/// temporary file, then renamed). Nothing else is imported here, so the runner
/// decides what a worker's start-up costs.
const BOOT: &str = r#"import sys, marshal
f = sys.stdin.buffer
src = f.read(int(f.readline()))
cache = f.readline()[:-1].decode("utf-8", "surrogateescape")
code = path = None
if cache:
    try:
        import _imp, _frozen_importlib_external as bootstrap
        key = bootstrap.MAGIC_NUMBER + _imp.source_hash(bootstrap._RAW_MAGIC_NUMBER, src)
        path = "%s/runner-%s.%s.bin" % (cache, key[4:].hex(), sys.implementation.cache_tag)
        with open(path, "rb") as h:
            data = h.read()
        if data[:12] == key:
            code = marshal.loads(data[12:])
            if code.__class__.__name__ != "code":
                code = None
    except Exception:
        code = None
if code is None:
    code = compile(src, "<httpsd-runner>", "exec")
    if path:
        try:
            import os
            os.makedirs(cache, 0o700, exist_ok=True)
            tmp = "%s.%d.tmp" % (path, os.getpid())
            with open(tmp, "wb") as h:
                h.write(key + marshal.dumps(code))
            os.replace(tmp, path)
        except Exception:
            pass
g = {"__name__": "__httpsd_runner__", "__file__": "<httpsd-runner>"}
exec(code, g)
g["main"](f)
"#;

/// httpsd's cache directory (`$XDG_CACHE_HOME/httpsd`, else `~/.cache/httpsd`), as
/// the line the boot code reads: empty when there is none (it must be absolute and
/// fit on one line).
fn cache_dir_line() -> String {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|home| home.join(".cache"))
        });
    base.map(|b| b.join("httpsd").to_string_lossy().into_owned())
        .filter(|d| !d.contains('\n'))
        .unwrap_or_default()
}

/// Largest JSON result a generator may return.
const MAX_RESULT: usize = 256 * 1024 * 1024;

/// Longest chunk of generator output logged as one line.
const MAX_OUTPUT_LINE: u64 = 4096;

/// Per call, generator output beyond this many lines or bytes is counted, not logged.
const OUTPUT_LOG_LINES: usize = 200;
const OUTPUT_LOG_BYTES: usize = 64 * 1024;

/// Lines of output kept to explain a worker's death.
const OUTPUT_TAIL_LINES: usize = 40;

/// Starts the line a worker writes to its output before each generator runs (followed
/// by the generator's path under the root; an empty path after the last one of a call
/// or batch): output is attributed by this in-band mark, not by when the reply arrives
/// on the protocol pipe.
const OUTPUT_MARK: &str = "\u{1e}\u{1f}httpsd-generator ";

/// The environment variable the original sets in check mode.
const TEST_ENV: &str = "PROMETHEUS_HTTP_SD_IS_TEST";

/// The default pool size: twice the cores (generators mostly wait on the network),
/// between 4 and 32.
pub fn default_workers() -> usize {
    (super::cores() * 2).clamp(4, 32)
}

/// Runs `.py` generators on a pool of Python workers.
pub struct PythonRunner {
    pool: Option<Arc<Pool>>,
}

impl PythonRunner {
    /// Starts the pool; fails with a clear message when the interpreter is missing or
    /// broken.
    ///
    /// [`Warmth::Warm`] starts every worker at once and returns as soon as one answered
    /// its handshake (the others join the pool when ready). [`Warmth::Lazy`] proves
    /// the interpreter with one handshake, lets that worker go, and starts workers
    /// only when calls need them: a tree without Python keeps no interpreter resident.
    pub async fn start(
        settings: &RunnerSettings,
        warmth: Warmth,
    ) -> Result<PythonRunner, GeneratorError> {
        if settings.python_workers == 0 {
            tracing::info!("Python generators disabled (--python-workers 0)");
            return Ok(PythonRunner { pool: None });
        }
        let pool = Arc::new(Pool::new(settings, warmth));
        let hello = match warmth {
            Warmth::Warm => pool.start_all().await,
            Warmth::Forked => pool.start_forked().await,
            Warmth::Lazy => match spawn_worker(&pool.config, &pool.live).await {
                Ok((worker, hello)) => {
                    pool.retire(worker);
                    for _ in 0..pool.size {
                        pool.release(None);
                    }
                    Ok(hello)
                }
                Err(e) => Err(e),
            },
        };
        let h = match hello {
            Ok(h) => h,
            Err(e) => {
                pool.shutdown();
                return Err(GeneratorError::new(ErrorKind::Internal, e));
            }
        };
        tracing::info!(
            python = %h.python,
            executable = %h.executable,
            workers = settings.python_workers,
            lazy = warmth == Warmth::Lazy,
            max_run_time = settings.max_run_time.as_secs_f64(),
            "Python worker pool ready"
        );
        Ok(PythonRunner { pool: Some(pool) })
    }

    /// Runs many generators in check mode, as batches spread over the workers, and
    /// reports each one's start and result on the returned channel.
    ///
    /// Each file still has its own `--max-run-time`: a file past it fails alone, its
    /// worker is killed, and the rest of its batch runs elsewhere; the same holds for
    /// a file that crashes its worker.
    pub fn check_many(
        &self,
        items: Vec<(usize, GeneratorFile)>,
    ) -> mpsc::UnboundedReceiver<CheckEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let Some(pool) = &self.pool else {
            for (index, g) in items {
                let _ = tx.send(CheckEvent::Done(
                    index,
                    Err(disabled(&g.rel)),
                    Duration::ZERO,
                ));
            }
            return rx;
        };
        let queue: VecDeque<Item> = items
            .into_iter()
            .map(|(index, g)| Item {
                index,
                path: g.abs.to_string_lossy().into_owned(),
                rel: g.rel,
            })
            .collect();
        let lanes = pool.size.min(queue.len()).max(1);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..lanes {
            tokio::spawn(pool.clone().lane(queue.clone(), lanes, tx.clone()));
        }
        rx
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
            return Err(disabled(&generator.rel));
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

/// How the pool starts (see [`PythonRunner::start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmth {
    /// Every worker starts now.
    Warm,
    /// Workers start on the first calls that need them.
    Lazy,
    /// Like `Warm`, but one interpreter starts and forks the other workers once it has
    /// loaded the runner (a fraction of an interpreter's start-up each). For pools
    /// that live as long as one command (`check`): the copies are the first worker's
    /// children, so their exit status is only known while it lives.
    Forked,
}

impl Warmth {
    /// Warm when the tree has a Python generator now, lazy otherwise (a tree
    /// without Python keeps no interpreter resident until one appears).
    pub fn for_tree(catalog: &crate::catalog::Catalog) -> Warmth {
        let snapshot = catalog.snapshot();
        if snapshot
            .listing
            .generators
            .iter()
            .any(|g| g.kind == crate::tree::GeneratorKind::Python)
        {
            Warmth::Warm
        } else {
            Warmth::Lazy
        }
    }
}

/// Progress of [`PythonRunner::check_many`].
#[derive(Debug)]
pub enum CheckEvent {
    /// The generator with this index started running.
    Started(usize),
    /// It finished: its raw result and its run time.
    Done(usize, Result<serde_json::Value, GeneratorError>, Duration),
}

fn disabled(rel: &str) -> GeneratorError {
    GeneratorError::new(
        ErrorKind::Unsupported,
        format!("{rel}: Python generators are disabled (--python-workers 0)"),
    )
}

/// One generator of a check batch.
struct Item {
    index: usize,
    rel: String,
    path: String,
}

/// Takes the next batch off a check's queue: at most `size` files, and at most half
/// of a fair share of what is left, so the other lanes keep work.
fn take_chunk(queue: &Mutex<VecDeque<Item>>, lanes: usize, size: usize) -> Vec<Item> {
    let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
    let n = size.min(q.len().div_ceil(lanes * 2)).max(1).min(q.len());
    q.drain(..n).collect()
}

/// Why a batch ended early.
enum BatchBreak {
    /// The item that broke it (its index, path and start) and why.
    Broken(usize, String, std::time::Instant, Broken),
    /// This generator hit `MemoryError` (its reply was reported): the worker must go.
    Recycle(String),
}

/// How a batch ended early, and the items it did not run.
type BatchFailure = (BatchBreak, Vec<Item>);

/// Batches sent to a worker at once: it starts the next one while httpsd is still
/// reading the replies of the last (which takes up to a poll when output is polled).
const BATCHES_IN_FLIGHT: usize = 3;

/// First batch of a lane when the workers' output is polled (`check`).
const POLLED_FIRST_BATCH: usize = 16;

/// Longest batch sent to one worker.
const MAX_BATCH: usize = 64;

/// A batch that took less than this grows; a slower one shrinks back to one file,
/// so slow generators spread over the workers and fast ones pay few round trips.
const FAST_BATCH: Duration = Duration::from_millis(25);

/// Fixed settings of the pool.
#[derive(Debug, Clone)]
struct PoolConfig {
    python: PathBuf,
    root: PathBuf,
    max_run_time: Duration,
    startup_timeout: Duration,
    memory_limit: u64,
    /// Workers' output is polled rather than waited on (`check`, see `polled_pipe`).
    polled: bool,
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
struct BatchRequest<'a> {
    id: u64,
    batch: Vec<&'a str>,
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
    /// The position in its batch (batches only).
    #[serde(default)]
    index: Option<usize>,
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
    /// Its process id (how httpsd learns a forked copy's).
    pid: i32,
    python: String,
    executable: String,
}

/// Why a call did not get a usable reply.
enum Broken {
    /// The reply belongs to another request.
    WrongReply(u64),
    /// The worker died or broke the protocol.
    Failed(Failure),
    /// No reply within `--max-run-time`.
    Timeout,
}

/// Why a worker stopped answering.
enum Failure {
    /// It exited or closed the channel.
    Died(String),
    /// It answered something that is not the protocol.
    Protocol(String),
}

impl Pool {
    fn new(settings: &RunnerSettings, warmth: Warmth) -> Pool {
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
                polled: warmth == Warmth::Forked,
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
                // A worker killed by a shutdown while it started is no error.
                Err(_) if pool.closed.load(Ordering::SeqCst) => pool.release(None),
                Err(e) => {
                    tracing::error!(error = %e, "cannot replace a Python worker; will retry on the next call");
                    pool.release(None);
                }
            }
        });
    }

    /// Starts every worker at once; returns the first handshake, or the first error
    /// when none of them started.
    async fn start_all(self: &Arc<Self>) -> Result<Hello, String> {
        let (tx, mut rx) = mpsc::channel(self.size);
        for _ in 0..self.size {
            let (pool, tx) = (self.clone(), tx.clone());
            tokio::spawn(async move {
                let answer = pool.seat(spawn_worker(&pool.config, &pool.live).await);
                let _ = tx.send(answer).await;
            });
        }
        drop(tx);
        let mut first_error = None;
        while let Some(answer) = rx.recv().await {
            match answer {
                Ok(hello) => return Ok(hello),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| "no Python worker started".to_string()))
    }

    /// Starts one worker that forks the others after its start-up; returns its
    /// handshake, or the error when it did not start. A copy that fails leaves its slot
    /// empty, to be filled by a worker started on demand.
    async fn start_forked(self: &Arc<Self>) -> Result<Hello, String> {
        // A copy that outlives the first worker becomes httpsd's child rather than
        // init's, so it stays a zombie whose exit status can be read (`zombie_status`)
        // until httpsd exits. Process-wide, hence only for one-command pools.
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::debug!(error = %e, "cannot become a child subreaper");
        }
        let (first, copies) = spawn_family(&self.config, &self.live, self.size - 1).await;
        for copy in copies {
            if let Err(e) = self.seat(copy) {
                tracing::debug!(error = %e, "a forked Python worker did not start");
            }
        }
        self.seat(first)
    }

    /// Puts a worker that started into its slot (or leaves the slot empty when it did
    /// not) and passes its handshake or error on.
    fn seat(&self, started: Started) -> Result<Hello, String> {
        match started {
            Ok((w, hello)) => {
                self.release(Some(w));
                Ok(hello)
            }
            Err(e) => {
                self.release(None);
                Err(e)
            }
        }
    }

    /// Takes a free worker, starting one when its slot is empty. The error's message
    /// is to follow the generator's name.
    async fn take_worker(&self) -> Result<Worker, (ErrorKind, String)> {
        let limit = self.config.max_run_time;
        if self.closed.load(Ordering::SeqCst) {
            return Err((
                ErrorKind::Internal,
                "the Python worker pool is shutting down".into(),
            ));
        }
        let slot = async { self.slots_rx.lock().await.recv().await };
        let slot = match tokio::time::timeout(limit, slot).await {
            Ok(Some(slot)) => slot,
            Ok(None) => {
                return Err((
                    ErrorKind::Internal,
                    "the Python worker pool is closed".into(),
                ));
            }
            Err(_) => {
                return Err((
                    ErrorKind::Timeout,
                    format!(
                        "no Python worker became free within {}s (all {} busy)",
                        limit.as_secs_f64(),
                        self.size
                    ),
                ));
            }
        };
        match slot {
            Some(w) => Ok(w),
            None => match spawn_worker(&self.config, &self.live).await {
                Ok((w, _)) => Ok(w),
                Err(e) => {
                    self.release(None);
                    Err((
                        ErrorKind::Internal,
                        format!("cannot start a Python worker: {e}"),
                    ))
                }
            },
        }
    }

    /// One lane of a check: takes batches off the shared queue until it is empty.
    async fn lane(
        self: Arc<Self>,
        queue: Arc<Mutex<VecDeque<Item>>>,
        lanes: usize,
        events: mpsc::UnboundedSender<CheckEvent>,
    ) {
        // Polled output is seen up to a poll late, so a batch must outlast that to keep
        // the worker fed: polled lanes start bigger.
        let mut size = if self.config.polled {
            POLLED_FIRST_BATCH
        } else {
            1
        };
        loop {
            let chunk = take_chunk(&queue, lanes, size);
            if chunk.is_empty() {
                return;
            }
            let worker = match self.take_worker().await {
                Ok(w) => w,
                Err((kind, why)) => {
                    for item in chunk {
                        let e = GeneratorError::new(kind, format!("{}: {why}", item.rel));
                        let _ = events.send(CheckEvent::Done(item.index, Err(e), Duration::ZERO));
                    }
                    continue;
                }
            };
            let rest = self
                .run_batches(worker, chunk, &queue, lanes, &mut size, &events)
                .await;
            if !rest.is_empty() {
                let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
                for item in rest.into_iter().rev() {
                    q.push_front(item);
                }
            }
        }
    }

    /// Runs batches on `worker` in check mode, starting with `chunk` and taking more
    /// off the queue while it lasts. The next batch is always sent before the current
    /// one is done, so the worker never waits for httpsd between two batches. Returns
    /// the items it did not run because the worker had to go (a timeout, a death, a
    /// `MemoryError`); the worker is released otherwise.
    async fn run_batches(
        self: &Arc<Self>,
        mut worker: Worker,
        chunk: Vec<Item>,
        queue: &Mutex<VecDeque<Item>>,
        lanes: usize,
        size: &mut usize,
        events: &mpsc::UnboundedSender<CheckEvent>,
    ) -> Vec<Item> {
        let mut sent: VecDeque<(u64, Vec<Item>)> = VecDeque::new();
        let mut next = Some(chunk);
        // A batch that could not be sent (the worker is gone): it runs elsewhere.
        let mut unsent: Vec<Item> = Vec::new();
        loop {
            // Keep one batch queued in the worker behind the one it runs.
            while sent.len() < BATCHES_IN_FLIGHT && unsent.is_empty() {
                let Some(chunk) = next.take().or_else(|| {
                    let c = take_chunk(queue, lanes, *size);
                    (!c.is_empty()).then_some(c)
                }) else {
                    break;
                };
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let request = BatchRequest {
                    id,
                    batch: chunk.iter().map(|i| i.path.as_str()).collect(),
                };
                let line = match request_line(&request) {
                    Ok(l) => l,
                    Err(e) => {
                        for item in chunk {
                            let e = GeneratorError::new(
                                ErrorKind::Internal,
                                format!("{}: cannot encode the request: {e}", item.rel),
                            );
                            let _ =
                                events.send(CheckEvent::Done(item.index, Err(e), Duration::ZERO));
                        }
                        continue;
                    }
                };
                match worker.send(&line).await {
                    Ok(()) => sent.push_back((id, chunk)),
                    // The worker is gone (a generator of the batch it runs killed
                    // it, say): that batch's replies say which, this one runs elsewhere.
                    Err(_) => unsent = chunk,
                }
            }
            let Some((id, chunk)) = sent.pop_front() else {
                if unsent.is_empty() {
                    self.release(Some(worker));
                } else {
                    self.retire(worker);
                    self.refill();
                }
                return unsent;
            };
            let started = std::time::Instant::now();
            let count = chunk.len();
            match self.receive_batch(&mut worker, id, chunk, events).await {
                Ok(()) => {
                    *size = if started.elapsed() < FAST_BATCH {
                        (count * 2).min(MAX_BATCH)
                    } else {
                        1
                    };
                }
                Err((why, rest)) => {
                    match why {
                        BatchBreak::Broken(index, rel, started, why) => {
                            let e = self.broken(worker, &rel, id, why).await;
                            let _ = events.send(CheckEvent::Done(index, Err(e), started.elapsed()));
                        }
                        BatchBreak::Recycle(rel) => self.replace_after_memory_error(worker, &rel),
                    }
                    return rest
                        .into_iter()
                        .chain(sent.into_iter().flat_map(|(_, c)| c))
                        .chain(unsent)
                        .collect();
                }
            }
        }
    }

    /// Receives the replies of batch `id` (already sent), one per item, each within
    /// its own time limit.
    async fn receive_batch(
        self: &Arc<Self>,
        worker: &mut Worker,
        id: u64,
        chunk: Vec<Item>,
        events: &mpsc::UnboundedSender<CheckEvent>,
    ) -> Result<(), BatchFailure> {
        let limit = self.config.max_run_time;
        let mut items = chunk.into_iter().enumerate();
        while let Some((k, item)) = items.next() {
            let _ = events.send(CheckEvent::Started(item.index));
            let started = std::time::Instant::now();
            let broken = match tokio::time::timeout(limit, worker.receive()).await {
                Ok(Ok(reply)) if reply.id == id && reply.index == Some(k) => {
                    let took = Duration::try_from_secs_f64(reply.secs)
                        .unwrap_or_else(|_| started.elapsed());
                    let recycle = reply.recycle;
                    let result = reply_result(&item.rel, reply);
                    let _ = events.send(CheckEvent::Done(item.index, result, took));
                    if recycle {
                        return Err((
                            BatchBreak::Recycle(item.rel),
                            items.map(|(_, i)| i).collect(),
                        ));
                    }
                    continue;
                }
                Ok(Ok(reply)) => Broken::WrongReply(reply.id),
                Ok(Err(f)) => Broken::Failed(f),
                Err(_) => Broken::Timeout,
            };
            return Err((
                BatchBreak::Broken(item.index, item.rel, started, broken),
                items.map(|(_, i)| i).collect(),
            ));
        }
        Ok(())
    }

    /// Replaces a worker that did not answer a call properly and says why the call
    /// failed.
    async fn broken(
        self: &Arc<Self>,
        worker: Worker,
        rel: &str,
        id: u64,
        why: Broken,
    ) -> GeneratorError {
        let pid = worker.pid;
        let limit = self.config.max_run_time;
        match why {
            Broken::WrongReply(got) => {
                self.retire(worker);
                self.refill();
                GeneratorError::new(
                    ErrorKind::Internal,
                    format!(
                        "{rel}: the Python worker answered request {got} instead of {id}; worker replaced"
                    ),
                )
            }
            Broken::Failed(Failure::Protocol(why)) => {
                let tail = worker.output.take_tail();
                self.retire(worker);
                self.refill();
                with_tail(
                    GeneratorError::new(
                        ErrorKind::Internal,
                        format!(
                            "{rel}: the Python worker broke the protocol ({why}); worker replaced"
                        ),
                    ),
                    tail,
                )
            }
            Broken::Failed(Failure::Died(why)) => {
                let tail = self.retire_and_wait(worker).await;
                self.refill();
                tracing::warn!(generator = %rel, pid, reason = %why, "a Python worker died; replacing it");
                with_tail(
                    GeneratorError::new(
                        ErrorKind::WorkerDied,
                        format!("{rel}: the Python worker running it died ({why})"),
                    ),
                    tail,
                )
            }
            Broken::Timeout => {
                self.retire(worker);
                self.refill();
                tracing::warn!(generator = %rel, pid, "generator ran past --max-run-time; its Python worker was killed");
                GeneratorError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{rel}: still running after {}s (--max-run-time); its Python worker was killed",
                        limit.as_secs_f64()
                    ),
                )
            }
        }
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
        let mut worker = self
            .take_worker()
            .await
            .map_err(|(kind, why)| GeneratorError::new(kind, format!("{rel}: {why}")))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = match request_line(&Request {
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
        let pid = worker.pid;
        let sent = std::time::Instant::now();
        let outcome = tokio::time::timeout(limit, async {
            worker.send(&line).await?;
            worker.receive().await
        })
        .await;
        let broken = match outcome {
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
                    self.replace_after_memory_error(worker, rel);
                } else {
                    self.release(Some(worker));
                }
                return reply_result(rel, reply);
            }
            Ok(Ok(reply)) => Broken::WrongReply(reply.id),
            Ok(Err(f)) => Broken::Failed(f),
            Err(_) => Broken::Timeout,
        };
        Err(self.broken(worker, rel, id, broken).await)
    }

    /// A worker that hit `MemoryError` is not trusted with another call.
    fn replace_after_memory_error(self: &Arc<Self>, worker: Worker, rel: &str) {
        tracing::info!(generator = %rel, pid = worker.pid, "replacing a Python worker after MemoryError");
        self.retire(worker);
        self.refill();
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

/// One protocol line: the request as JSON and a newline.
fn request_line(request: &impl serde::Serialize) -> serde_json::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    Ok(line)
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

/// httpsd's end of a worker's stdout or stderr: waited on (`serve`), or polled on a
/// timer (`check`, see `polled_pipe`).
type ReadEnd = Pin<Box<dyn AsyncRead + Send>>;

/// Opens httpsd's end of a worker's stdout or stderr.
fn read_end(fd: OwnedFd, polled: bool) -> std::io::Result<ReadEnd> {
    Ok(if polled {
        Box::pin(PolledPipe::new(fd)?)
    } else {
        Box::pin(pipe::Receiver::from_owned_fd(fd)?)
    })
}

/// A live worker process and its channel.
struct Worker {
    pid: i32,
    /// `None` for a forked copy ([`Warmth::Forked`]): it is the first worker's child.
    child: Option<Child>,
    stdin: pipe::Sender,
    stdout: BufReader<ReadEnd>,
    output: Arc<Output>,
    pump: Option<tokio::task::JoinHandle<()>>,
}

impl Worker {
    /// A worker over its pipes (httpsd's ends of its stdin, stdout and stderr); starts
    /// logging its output.
    fn open(
        pid: i32,
        child: Option<Child>,
        (stdin, stdout, stderr): (OwnedFd, OwnedFd, OwnedFd),
        polled: bool,
    ) -> std::io::Result<Worker> {
        let stdin = pipe::Sender::from_owned_fd(stdin)?;
        let stdout = read_end(stdout, polled)?;
        let stderr = read_end(stderr, polled)?;
        let output = Arc::new(Output::new(pid));
        let pump = tokio::spawn(pump_output(stderr, output.clone()));
        Ok(Worker {
            pid,
            child,
            stdin,
            stdout: BufReader::with_capacity(64 * 1024, stdout),
            output,
            pump: Some(pump),
        })
    }

    /// Sends one request line.
    async fn send(&mut self, line: &[u8]) -> Result<(), Failure> {
        match self.stdin.write_all(line).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.died(format!("cannot send it the request: {e}")).await),
        }
    }

    /// Reads one reply, watching for the process's exit.
    async fn receive(&mut self) -> Result<Reply, Failure> {
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
            status = exited(&mut self.child) => status,
        };
        match status {
            Some(s) => Err(Failure::Died(describe_exit(s))),
            None => Err(self.died("it closed its channel".to_string()).await),
        }
    }

    /// The exit status when the process is gone (or going), else `fallback`.
    async fn died(&mut self, fallback: String) -> Failure {
        let pid = self.pid;
        let status = tokio::time::timeout(Duration::from_millis(200), async {
            match self.child.as_mut() {
                Some(child) => child.wait().await.ok(),
                None => loop {
                    match zombie_status(pid) {
                        Some(status) => break status,
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                },
            }
        })
        .await;
        match status {
            Ok(Some(status)) => Failure::Died(describe_exit(status)),
            _ => Failure::Died(fallback),
        }
    }

    fn kill(self, live: &Mutex<HashSet<i32>>) {
        live.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.pid);
        kill_group(self.pid);
        if let Some(mut child) = self.child {
            let _ = child.start_kill();
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
    }
}

/// Waits for a worker's process to exit (a copy's exit shows as its channel closing).
async fn exited(child: &mut Option<Child>) -> Option<ExitStatus> {
    match child.as_mut() {
        Some(child) => child.wait().await.ok(),
        None => std::future::pending().await,
    }
}

/// The exit status of a forked copy that has exited: its parent (the first worker)
/// does not reap it, so it stays a zombie whose status `/proc` shows (field 52 of
/// `stat`). `None` while it runs, or once it is gone (its parent exited too).
fn zombie_status(pid: i32) -> Option<Option<ExitStatus>> {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Some(None);
    };
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // fields[0] is field 3 (the state), so field 52 (exit_code) is fields[49].
    if fields.first() != Some(&"Z") {
        return None;
    }
    Some(
        fields
            .get(49)
            .and_then(|code| code.parse::<i32>().ok())
            .map(ExitStatus::from_raw),
    )
}

/// Reads one line (without the newline) of at most `limit` bytes. `Ok(true)` when
/// a whole line was read; `Ok(false)` at end of input or when the line is too long.
async fn read_line(
    reader: &mut BufReader<ReadEnd>,
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
    spawn_family(config, live, 0).await.0
}

/// A started worker and its handshake, or why it did not start.
type Started = Result<(Worker, Hello), String>;

/// Pipes for one forked copy: httpsd's ends (stdin, stdout, stderr of the copy), and
/// the copy's ends, which the first worker inherits and the copy makes its fds 0-2.
fn copy_pipes() -> Option<((OwnedFd, OwnedFd, OwnedFd), [OwnedFd; 3])> {
    let flags = nix::fcntl::OFlag::O_CLOEXEC;
    let (in_r, in_w) = nix::unistd::pipe2(flags).ok()?;
    let (out_r, out_w) = nix::unistd::pipe2(flags).ok()?;
    let (err_r, err_w) = nix::unistd::pipe2(flags).ok()?;
    let theirs = [in_r, out_w, err_w];
    // A pipe on fd 0-2 (httpsd started with a standard stream closed) would be
    // overwritten by the first worker's own stdio: no copy then.
    if theirs.iter().any(|fd| fd.as_raw_fd() < 3) {
        return None;
    }
    Some(((in_w, out_r, err_r), theirs))
}

/// Starts one worker that forks `copies` copies of itself once it has loaded the
/// runner (see [`Warmth::Forked`]), and waits for every handshake. Returns the first
/// worker's outcome and one outcome per copy.
async fn spawn_family(
    config: &PoolConfig,
    live: &Arc<Mutex<HashSet<i32>>>,
    copies: usize,
) -> (Started, Vec<Started>) {
    let python = config.python.display().to_string();
    let started = std::time::Instant::now();
    let (ours, theirs): (Vec<_>, Vec<_>) = (0..copies).map_while(|_| copy_pipes()).unzip();
    let passed: Arc<Vec<OwnedFd>> = Arc::new(theirs.into_iter().flatten().collect());
    let copy_fds: Vec<Vec<i32>> = passed
        .chunks(3)
        .map(|c| c.iter().map(AsRawFd::as_raw_fd).collect())
        .collect();
    let mut command = Command::new(&config.python);
    command
        .arg("-c")
        .arg(BOOT)
        .env_remove(TEST_ENV)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let inherited = passed.clone();
    // The worker dies with httpsd even if httpsd is killed with SIGKILL. Set here
    // rather than by the worker itself: Python can only reach prctl(2) through
    // ctypes, whose import was a fifth of a worker's start-up. The copies' pipe ends
    // are let through exec.
    // SAFETY: between fork and exec, the closure only makes the prctl(2) and fcntl(2)
    // system calls, which are async-signal-safe; it allocates nothing and takes no
    // lock (it borrows fds from a vector built before the fork).
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            for fd in inherited.iter() {
                let keep = nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty());
                nix::fcntl::fcntl(fd, keep)?;
            }
            Ok(())
        });
    }
    let spawned = command.spawn();
    // From here only the first worker holds the copies' ends: a copy that is never
    // made shows as its pipes closing.
    drop(command);
    drop(passed);
    let failed = |e: String| -> (Started, Vec<Started>) {
        let rest = (0..copies).map(|_| Err(e.clone())).collect();
        (Err(e), rest)
    };
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return failed(format!(
                "cannot start the Python interpreter {python:?} (--python): {e}"
            ));
        }
    };
    let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        return failed(format!("the Python interpreter {python:?} exited at once"));
    };
    live.lock().unwrap_or_else(|e| e.into_inner()).insert(pid);
    let fds = match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
        (Some(i), Some(o), Some(e)) => {
            match (i.into_owned_fd(), o.into_owned_fd(), e.into_owned_fd()) {
                (Ok(i), Ok(o), Ok(e)) => Some((i, o, e)),
                _ => None,
            }
        }
        _ => None,
    };
    let Some(Ok(mut first)) = fds.map(|fds| Worker::open(pid, Some(child), fds, config.polled))
    else {
        kill_group(pid);
        return failed("cannot open pipes to the Python interpreter".to_string());
    };
    let settings = serde_json::json!({
        "root": config.root.to_string_lossy(),
        "ppid": std::process::id(),
        "memory_limit": config.memory_limit,
        "max_result": MAX_RESULT,
        "copies": copy_fds,
    });
    let first_started = async {
        match finish_start(config, &mut first, &python, Some(&settings)).await {
            Ok(hello) => Ok((first, hello)),
            Err(e) => Err((first, e)),
        }
    };
    let copies_started = futures::future::join_all(ours.into_iter().map(|fds| async {
        let mut copy = Worker::open(0, None, fds, config.polled)
            .map_err(|e| format!("cannot open pipes to a forked Python worker: {e}"))?;
        let hello = finish_start(config, &mut copy, &python, None).await?;
        copy.pid = hello.pid;
        copy.output.set_pid(hello.pid);
        live.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hello.pid);
        Ok((copy, hello))
    }));
    let (first, mut rest) = futures::join!(first_started, copies_started);
    rest.resize_with(copies, || {
        Err("cannot make the pipes of a forked Python worker".to_string())
    });
    let first = match first {
        Ok((worker, hello)) => {
            tracing::debug!(
                pid,
                copies = rest.iter().filter(|c| c.is_ok()).count(),
                seconds = started.elapsed().as_secs_f64(),
                "Python worker started"
            );
            Ok((worker, hello))
        }
        Err((mut worker, e)) => {
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
    };
    (first, rest)
}

/// Sends the runner and `settings` (the first worker only; a copy has them already),
/// then waits for the handshake, within the start-up time limit.
async fn finish_start(
    config: &PoolConfig,
    worker: &mut Worker,
    python: &str,
    settings: Option<&serde_json::Value>,
) -> Result<Hello, String> {
    match tokio::time::timeout(config.startup_timeout, handshake(worker, python, settings)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "the Python interpreter {python:?} did not start within {}s",
            config.startup_timeout.as_secs_f64()
        )),
    }
}

async fn handshake(
    worker: &mut Worker,
    python: &str,
    settings: Option<&serde_json::Value>,
) -> Result<Hello, String> {
    if let Some(settings) = settings {
        let mut line = format!(
            "{}\n{RUNNER_SOURCE}{}\n",
            RUNNER_SOURCE.len(),
            cache_dir_line()
        )
        .into_bytes();
        serde_json::to_writer(&mut line, settings)
            .map_err(|e| format!("cannot encode the worker settings: {e}"))?;
        line.push(b'\n');
        let _ = worker.stdin.write_all(&line).await;
    }
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
                _ => match worker.died(String::new()).await {
                    Failure::Died(why) if !why.is_empty() => Some(why),
                    _ => None,
                },
            },
            status = exited(&mut worker.child) => status.map(describe_exit),
        };
        let printed = printed.map_or_else(String::new, |p| format!(" after printing {p:?}"));
        return Err(format!(
            "{python:?} is not a working Python 3 interpreter (--python): it {}{printed}",
            status.unwrap_or_else(|| "closed its output".to_string())
        ));
    }
    Err(format!(
        "{python:?} is not a working Python 3 interpreter (--python): it printed {:?} instead of the handshake",
        printed.unwrap_or_default()
    ))
}

/// Generator output of one worker: who is running, what was logged, the tail.
struct Output {
    /// The worker's pid (a forked copy's is known from its handshake).
    pid: AtomicI32,
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
            pid: AtomicI32::new(pid),
            state: Mutex::new(OutputState::default()),
        }
    }

    fn pid(&self) -> i32 {
        self.pid.load(Ordering::Relaxed)
    }

    fn set_pid(&self, pid: i32) {
        self.pid.store(pid, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutputState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The worker starts running `rel` (`""`: it finished one): what it prints from
    /// here on is `rel`'s. The tail is kept until the next generator starts, so that a
    /// failure seen after the call still shows what the call printed.
    fn begin_generator(&self, rel: &str) {
        let suppressed = {
            let mut s = self.lock();
            let suppressed = std::mem::take(&mut s.suppressed_bytes);
            let previous = std::mem::replace(&mut s.generator, rel.to_string());
            s.lines = 0;
            s.bytes = 0;
            if !rel.is_empty() {
                s.tail.clear();
            }
            (suppressed > 0).then_some((previous, suppressed))
        };
        if let Some((generator, suppressed)) = suppressed {
            tracing::warn!(
                generator = %generator,
                pid = self.pid(),
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
        if let Some(rel) = text.strip_prefix(OUTPUT_MARK) {
            return self.begin_generator(rel);
        }
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
                tracing::info!(target: "httpsd::python", pid = self.pid(), "{text}");
            } else {
                tracing::info!(target: "httpsd::python", generator = %generator, pid = self.pid(), "{text}");
            }
        }
    }
}

/// Reads a worker's stderr (where user prints go) until it closes.
async fn pump_output(stderr: ReadEnd, output: Arc<Output>) {
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
        let runner = PythonRunner::start(&settings(&root), Warmth::Warm)
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
