//! What workers print: read from each worker's stderr (where the runner sends user
//! code's stdout and stderr), attributed to the call that printed it by the marks the
//! runner writes in that stream, limited per call, and passed to an [`OutputSink`].
//! The last lines are kept to explain a worker's death.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// Longest chunk of output passed on as one line.
const MAX_OUTPUT_LINE: u64 = 4096;

/// Per call, output beyond this many lines or bytes is counted, not passed on.
const OUTPUT_LOG_LINES: usize = 200;
const OUTPUT_LOG_BYTES: usize = 64 * 1024;

/// Lines of output kept to explain a worker's death.
const OUTPUT_TAIL_LINES: usize = 40;

/// Starts the line a worker writes to its output before each call runs (followed by
/// the module's path under the root; an empty path after the last one of a call or
/// batch): output is attributed by this in-band mark, not by when the reply arrives
/// on the protocol pipe (`OUTPUT_MARK` in runner.py).
const OUTPUT_MARK: &str = "\u{1e}\u{1f}python-pool-call ";

/// Receives the workers' output.
pub trait OutputSink: Send + Sync {
    /// One line printed by worker `pid` while running `name` (`""`: between calls).
    fn line(&self, pid: i32, name: &str, text: &str);
    /// `name` printed `bytes` more bytes past the per-call limit, not passed on.
    fn suppressed(&self, pid: i32, name: &str, bytes: usize);
}

/// Logs the workers' output with `tracing` (target `python_pool::output`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOutput;

impl OutputSink for LogOutput {
    fn line(&self, pid: i32, name: &str, text: &str) {
        tracing::info!(target: "python_pool::output", call = %name, pid, "{text}");
    }

    fn suppressed(&self, pid: i32, name: &str, bytes: usize) {
        tracing::warn!(call = %name, pid, "{bytes} more bytes of output were not logged");
    }
}

/// The output of one worker: who is running, what was passed on, the tail.
pub(crate) struct Output {
    /// The worker's pid (a forked copy's is known from its handshake).
    pid: AtomicI32,
    state: Mutex<OutputState>,
    sink: Arc<dyn OutputSink>,
}

#[derive(Default)]
struct OutputState {
    name: String,
    lines: usize,
    bytes: usize,
    suppressed_bytes: usize,
    tail: VecDeque<String>,
}

impl Output {
    pub fn new(pid: i32, sink: Arc<dyn OutputSink>) -> Output {
        Output {
            pid: AtomicI32::new(pid),
            state: Mutex::new(OutputState::default()),
            sink,
        }
    }

    fn pid(&self) -> i32 {
        self.pid.load(Ordering::Relaxed)
    }

    pub fn set_pid(&self, pid: i32) {
        self.pid.store(pid, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutputState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The worker starts running `name` (`""`: it finished one): what it prints from
    /// here on is `name`'s. The tail is kept until the next call starts, so that a
    /// failure seen after the call still shows what the call printed.
    fn begin_call(&self, name: &str) {
        let suppressed = {
            let mut s = self.lock();
            let suppressed = std::mem::take(&mut s.suppressed_bytes);
            let previous = std::mem::replace(&mut s.name, name.to_string());
            s.lines = 0;
            s.bytes = 0;
            if !name.is_empty() {
                s.tail.clear();
            }
            (suppressed > 0).then_some((previous, suppressed))
        };
        if let Some((previous, suppressed)) = suppressed {
            self.sink.suppressed(self.pid(), &previous, suppressed);
        }
    }

    /// The last lines printed (since the current call started), taken.
    pub fn take_tail(&self) -> String {
        let mut s = self.lock();
        let lines: Vec<String> = s.tail.drain(..).collect();
        lines.join("\n")
    }

    /// Records one line of output and passes it on unless this call printed too much.
    pub fn line(&self, text: &str) {
        if let Some(name) = text.strip_prefix(OUTPUT_MARK) {
            return self.begin_call(name);
        }
        let name = {
            let mut s = self.lock();
            if s.tail.len() == OUTPUT_TAIL_LINES {
                s.tail.pop_front();
            }
            s.tail.push_back(text.to_string());
            if s.lines < OUTPUT_LOG_LINES && s.bytes < OUTPUT_LOG_BYTES {
                s.lines += 1;
                s.bytes += text.len();
                Some(s.name.clone())
            } else {
                s.suppressed_bytes += text.len() + 1;
                None
            }
        };
        if let Some(name) = name {
            self.sink.line(self.pid(), &name, text);
        }
    }
}

/// Reads a worker's stderr (where user prints go) until it closes.
pub(crate) async fn pump_output(stderr: impl AsyncRead + Unpin, output: Arc<Output>) {
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
