//! A one-line progress indicator on stderr for checks that take more than a moment.
//!
//! Drawn only when stderr is a terminal, and only after [`DELAY`], so quick runs and
//! CI logs stay clean. It names the generator that has been running longest, which
//! is what a user staring at a slow check wants to know.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a run must take before the indicator appears.
pub const DELAY: Duration = Duration::from_millis(500);
const TICK: Duration = Duration::from_millis(100);

/// Shared counters the workers update and the drawing thread reads.
#[derive(Debug, Default)]
pub struct Tracker {
    done: AtomicUsize,
    running: Mutex<HashMap<usize, (String, Instant)>>,
}

impl Tracker {
    /// Marks generator `index` (`name`) as started.
    pub fn start(&self, index: usize, name: &str) {
        if let Ok(mut r) = self.running.lock() {
            r.insert(index, (name.to_string(), Instant::now()));
        }
    }

    /// Marks generator `index` as finished.
    pub fn finish(&self, index: usize) {
        if let Ok(mut r) = self.running.lock() {
            r.remove(&index);
        }
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    fn line(&self, total: usize, started: Instant) -> String {
        let done = self.done.load(Ordering::Relaxed);
        let (running, oldest) = match self.running.lock() {
            Ok(r) => (
                r.len(),
                r.values()
                    .min_by_key(|(_, t)| *t)
                    .map(|(n, t)| (n.clone(), t.elapsed())),
            ),
            Err(_) => (0, None),
        };
        let mut line = format!(
            "checking: {done}/{total} done, {running} running, {:.1}s",
            started.elapsed().as_secs_f64()
        );
        if let Some((name, age)) = oldest
            && age >= Duration::from_secs(1)
        {
            line.push_str(&format!("; waiting for {name} ({:.0}s)", age.as_secs_f64()));
        }
        line
    }
}

/// The drawing thread; stopping it erases the line.
pub struct Progress {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing for `total` generators if stderr is a terminal.
    pub fn start(tracker: Arc<Tracker>, total: usize) -> Progress {
        if total == 0 || !std::io::stderr().is_terminal() {
            return Progress {
                stop: None,
                thread: None,
            };
        }
        let (tx, rx) = mpsc::channel::<()>();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            let mut drawn = false;
            let mut wait = DELAY;
            while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(wait) {
                let mut line = tracker.line(total, started);
                // Keep to one terminal line so `\r` can redraw it.
                let cut = (0..=line.len().min(100))
                    .rev()
                    .find(|&i| line.is_char_boundary(i))
                    .unwrap_or(0);
                line.truncate(cut);
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
                drawn = true;
                wait = TICK;
            }
            if drawn {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K");
                let _ = err.flush();
            }
        });
        Progress {
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Stops drawing and erases the line.
    pub fn finish(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop_now();
    }
}
