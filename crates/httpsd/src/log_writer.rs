//! Where log lines go: stderr, written in batches so that access logs at tens of
//! thousands of lines per second do not cost a `write(2)` (and a thread wake-up) per
//! request.
//!
//! Written by hand because the maintained option, `tracing-appender`'s non-blocking
//! writer, still hands every line to its thread through a channel and wakes that thread
//! per line; at our request rates that cost as much as the request itself. Here a line
//! is appended to a buffer under a mutex; a background thread writes the buffer every
//! [`FLUSH_INTERVAL`]. Warnings and errors are written at once (with everything before
//! them, in order), a full buffer is written by the thread that filled it, and dropping
//! the [`FlushGuard`] writes the rest: nothing is dropped.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long an INFO or DEBUG line may wait in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// Above this many buffered bytes, the line that crossed it writes the buffer itself.
const FULL: usize = 256 * 1024;

struct Shared {
    pending: Mutex<Vec<u8>>,
    /// Where batches go (stderr), held while writing so that batches arrive in the
    /// order they were taken.
    out: Mutex<Box<dyn Write + Send>>,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if !batch.is_empty() {
            // Nowhere to report a failing stderr; the lines are lost as they would be
            // with a direct write.
            let _ = out.write_all(&batch);
            let _ = out.flush();
        }
    }
}

/// The `MakeWriter` of the log layer: appends lines to the shared buffer.
#[derive(Clone)]
pub struct BatchedStderr {
    shared: Arc<Shared>,
}

/// Writes what is still buffered and stops the background thread when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A batched stderr writer and the guard that flushes it at the end.
pub fn batched_stderr() -> (BatchedStderr, FlushGuard) {
    batched(Box::new(std::io::stderr()))
}

fn batched(out: Box<dyn Write + Send>) -> (BatchedStderr, FlushGuard) {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Vec::with_capacity(64 * 1024)),
        out: Mutex::new(out),
        stop: Mutex::new(false),
        wake: Condvar::new(),
    });
    let s = shared.clone();
    let thread = std::thread::Builder::new()
        .name("httpsd-log".into())
        .spawn(move || {
            let mut stop = s.stop.lock().unwrap_or_else(|e| e.into_inner());
            while !*stop {
                stop = s
                    .wake
                    .wait_timeout(stop, FLUSH_INTERVAL)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                s.flush();
            }
        })
        .ok();
    (
        BatchedStderr {
            shared: shared.clone(),
        },
        FlushGuard { shared, thread },
    )
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.flush();
    }
}

/// One line (the fmt layer writes each event with a single `write_all`).
pub struct Line<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let len = {
            let mut pending = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            pending.extend_from_slice(buf);
            pending.len()
        };
        if self.urgent || len >= FULL {
            self.shared.flush();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStderr {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            shared: &self.shared,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        Line {
            shared: &self.shared,
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn line(w: &BatchedStderr, urgent: bool) -> Line<'_> {
        Line {
            shared: &w.shared,
            urgent,
        }
    }

    #[test]
    fn info_lines_wait_warnings_flush_in_order_and_the_guard_flushes() {
        let sink = Sink::default();
        let (w, guard) = batched(Box::new(sink.clone()));
        line(&w, false).write_all(b"info\n").unwrap();
        assert_eq!(sink.text(), "", "an INFO line waits for the batch");
        line(&w, true).write_all(b"warning\n").unwrap();
        assert_eq!(
            sink.text(),
            "info\nwarning\n",
            "a warning writes everything before it"
        );
        line(&w, false).write_all(b"last\n").unwrap();
        drop(guard);
        assert_eq!(
            sink.text(),
            "info\nwarning\nlast\n",
            "the guard writes the rest"
        );
    }

    #[test]
    fn the_background_thread_flushes_within_the_interval() {
        let sink = Sink::default();
        let (w, _guard) = batched(Box::new(sink.clone()));
        line(&w, false).write_all(b"info\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.text().is_empty() {
            assert!(std::time::Instant::now() < deadline, "never flushed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(sink.text(), "info\n");
    }

    #[test]
    fn a_full_buffer_is_written_by_the_writer() {
        let sink = Sink::default();
        let (w, _guard) = batched(Box::new(sink.clone()));
        line(&w, false).write_all(&vec![b' '; FULL]).unwrap();
        assert_eq!(sink.0.lock().unwrap().len(), FULL);
    }
}
