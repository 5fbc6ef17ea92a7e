//! One worker: starting it (alone, or as the first of a forked family), its handshake,
//! sending a request and reading a reply while watching for its death, and killing it.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::Child;

use crate::boot::boot_input;
use crate::config::PoolConfig;
use crate::error::StartError;
use crate::output::{Output, pump_output};
use crate::polled_pipe::PolledPipe;
use crate::process::{
    PipeEnds, copy_pipes, describe_exit, exited, kill_group, spawn_interpreter, zombie_status,
};
use crate::protocol::{Hello, Received, Reply, read_line, read_reply};

/// Largest JSON result a call may return.
pub(crate) const MAX_RESULT: usize = 256 * 1024 * 1024;

/// Process groups of all live workers (for shutdown).
pub(crate) type Live = Arc<Mutex<HashSet<i32>>>;

/// A started worker and its handshake, or why it did not start.
pub(crate) type Started = Result<(Worker, Hello), StartError>;

/// Why a worker stopped answering.
pub(crate) enum Failure {
    /// It exited or closed the channel.
    Died(String),
    /// It answered something that is not the protocol.
    Protocol(String),
}

/// The pool's end of a worker's stdout or stderr: waited on, or polled on a timer
/// ([`crate::Warmth::Forked`], see `polled_pipe`).
type ReadEnd = Pin<Box<dyn AsyncRead + Send>>;

/// What a worker's reply pipe holds: a result of a few MiB crosses it in a few
/// writes and reads instead of one per 64 KiB (the default), each of which wakes the
/// other side. Linux's limit for unprivileged processes (`pipe-max-size`) is 1 MiB by
/// default; when the call fails the pipe keeps its size, which is slower but works.
const REPLY_PIPE_SIZE: i32 = 1 << 20;

/// Widens a pipe to [`REPLY_PIPE_SIZE`] when the system allows it.
fn widen_pipe(fd: &OwnedFd) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use nix::fcntl::{FcntlArg, fcntl};
        let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(REPLY_PIPE_SIZE));
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = fd;
}

/// Opens the pool's end of a worker's stdout or stderr.
fn read_end(fd: OwnedFd, polled: bool) -> std::io::Result<ReadEnd> {
    Ok(if polled {
        Box::pin(PolledPipe::new(fd)?)
    } else {
        Box::pin(pipe::Receiver::from_owned_fd(fd)?)
    })
}

/// A live worker process and its channel.
pub(crate) struct Worker {
    /// Its process id, which is also its process group's.
    pub pid: i32,
    /// `None` for a forked copy: it is the first worker's child.
    child: Option<Child>,
    stdin: pipe::Sender,
    stdout: BufReader<ReadEnd>,
    /// What it prints.
    pub output: Arc<Output>,
    pump: Option<tokio::task::JoinHandle<()>>,
}

impl Worker {
    /// A worker over its pipes; starts reading its output.
    fn open(
        pid: i32,
        child: Option<Child>,
        (stdin, stdout, stderr): PipeEnds,
        config: &PoolConfig,
    ) -> std::io::Result<Worker> {
        let stdin = pipe::Sender::from_owned_fd(stdin)?;
        widen_pipe(&stdout);
        let stdout = read_end(stdout, config.polled)?;
        let stderr = read_end(stderr, config.polled)?;
        let output = Arc::new(Output::new(pid, config.output.clone()));
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
    pub async fn send(&mut self, line: &[u8]) -> Result<(), Failure> {
        match self.stdin.write_all(line).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.died(format!("cannot send it the request: {e}")).await),
        }
    }

    /// Reads one reply, watching for the process's exit.
    pub async fn receive(&mut self) -> Result<Reply, Failure> {
        // An error reply's line carries its message and traceback, which may quote
        // anything up to a result's size.
        let read = read_reply(&mut self.stdout, MAX_RESULT as u64 + 4096, MAX_RESULT);
        let status = tokio::select! {
            biased;
            r = read => match r {
                Ok(Received::Reply(reply)) => return Ok(reply),
                Ok(Received::Closed) => None,
                Ok(Received::Bad(why)) => return Err(Failure::Protocol(why)),
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

    /// Kills the worker's group, gives its output pump `grace` to drain (for a dead
    /// worker the last lines often explain the death, e.g. a segfault's traceback;
    /// for a closed pool they are the last call's output), and returns the last lines
    /// it printed.
    pub async fn drain_tail(&mut self, grace: Duration) -> String {
        kill_group(self.pid);
        if let Some(pump) = self.pump.take() {
            let _ = tokio::time::timeout(grace, pump).await;
        }
        self.output.take_tail()
    }

    /// Kills the worker with its process group; reaping happens in the background.
    pub fn kill(self, live: &Live) {
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

/// Starts one worker and waits for its handshake.
pub(crate) async fn spawn_worker(config: &PoolConfig, live: &Live) -> Started {
    spawn_family(config, live, 0).await.0
}

/// Starts one worker that forks `copies` copies of itself once it has loaded the
/// runner, and waits for every handshake. Returns the first worker's outcome and one
/// outcome per copy.
pub(crate) async fn spawn_family(
    config: &PoolConfig,
    live: &Live,
    copies: usize,
) -> (Started, Vec<Started>) {
    let python = config.python.display().to_string();
    let option = &config.python_option;
    let started = std::time::Instant::now();
    let (ours, theirs): (Vec<_>, Vec<_>) = (0..copies).map_while(|_| copy_pipes()).unzip();
    let passed: Arc<Vec<OwnedFd>> = Arc::new(theirs.into_iter().flatten().collect());
    let copy_fds: Vec<Vec<i32>> = passed
        .chunks(3)
        .map(|c| c.iter().map(AsRawFd::as_raw_fd).collect())
        .collect();
    let spawned = spawn_interpreter(config, passed);
    let failed = |e: StartError| -> (Started, Vec<Started>) {
        let rest = (0..copies).map(|_| Err(e.clone())).collect();
        (Err(e), rest)
    };
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            return failed(StartError::new(format!(
                "cannot start the Python interpreter {python:?} ({option}): {e}"
            )));
        }
    };
    let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        return failed(StartError::new(format!(
            "the Python interpreter {python:?} exited at once"
        )));
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
    let Some(Ok(mut first)) = fds.map(|fds| Worker::open(pid, Some(child), fds, config)) else {
        kill_group(pid);
        return failed(StartError::new(
            "cannot open pipes to the Python interpreter",
        ));
    };
    let settings = serde_json::json!({
        "root": config.root.to_string_lossy(),
        "ppid": std::process::id(),
        "memory_limit": config.memory_limit,
        "max_result": MAX_RESULT,
        "copies": copy_fds,
        "shims": config.shims,
        "name": config.name,
    });
    let first_started = async {
        match finish_start(config, &mut first, Some(&settings)).await {
            Ok(hello) => Ok((first, hello)),
            Err(e) => Err((first, e)),
        }
    };
    let copies_started = futures::future::join_all(ours.into_iter().map(|fds| async {
        let mut copy = Worker::open(0, None, fds, config).map_err(|e| {
            StartError::new(format!("cannot open pipes to a forked Python worker: {e}"))
        })?;
        let hello = finish_start(config, &mut copy, None).await?;
        copy.pid = hello.pid;
        copy.output.set_pid(hello.pid);
        live.lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hello.pid);
        Ok((copy, hello))
    }));
    let (first, mut rest) = futures::join!(first_started, copies_started);
    rest.resize_with(copies, || {
        Err(StartError::new(
            "cannot make the pipes of a forked Python worker",
        ))
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
            let tail = worker.drain_tail(Duration::from_millis(500)).await;
            worker.kill(live);
            Err(if tail.is_empty() {
                e
            } else {
                StartError::new(format!("{e}; it printed:\n{tail}"))
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
    settings: Option<&serde_json::Value>,
) -> Result<Hello, StartError> {
    match tokio::time::timeout(config.startup_timeout, handshake(config, worker, settings)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(StartError::new(format!(
            "the Python interpreter {:?} did not start within {}s",
            config.python.display().to_string(),
            config.startup_timeout.as_secs_f64()
        ))),
    }
}

async fn handshake(
    config: &PoolConfig,
    worker: &mut Worker,
    settings: Option<&serde_json::Value>,
) -> Result<Hello, StartError> {
    let python = config.python.display().to_string();
    let option = &config.python_option;
    if let Some(settings) = settings {
        let input = boot_input(&config.code_cache, settings)
            .map_err(|e| StartError::new(format!("cannot encode the worker settings: {e}")))?;
        let _ = worker.stdin.write_all(&input).await;
    }
    // Tolerate a few lines before the handshake (a noisy sitecustomize or .pth file):
    // they are passed on as the worker's output.
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
        return Err(StartError::new(format!(
            "{python:?} is not a working Python 3 interpreter ({option}): it {}{printed}",
            status.unwrap_or_else(|| "closed its output".to_string())
        )));
    }
    Err(StartError::new(format!(
        "{python:?} is not a working Python 3 interpreter ({option}): it printed {:?} instead of the handshake",
        printed.unwrap_or_default()
    )))
}
