//! What the accept loop knows of each open connection: whether a request is in flight
//! and since when it has been waiting for one, so that the loop can close connections
//! that hold a slot without sending a request (the header and idle timeouts) and, when
//! every slot is taken, the one that has waited longest (fairness).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

use crate::ConnectionLimits;

/// The open connections of one listener.
#[derive(Debug)]
pub(crate) struct Tracker {
    /// The clock's zero: instants are kept as milliseconds since it, in atomics.
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

/// One connection's state, shared by its task, its requests and the accept loop.
#[derive(Debug)]
pub(crate) struct Conn {
    id: u64,
    epoch: Instant,
    /// Requests whose headers arrived and whose response body is not finished.
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` at which the connection started waiting for a
    /// request (accept, or the end of the last response).
    waiting_since: AtomicU64,
    /// Requests started on this connection.
    started: AtomicU64,
    /// Set by the accept loop when it picked this connection to close.
    evicting: AtomicBool,
    /// Wakes the connection's task to close it.
    pub(crate) evict: Notify,
}

/// Why a connection's task should stop waiting on it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Keep serving; look again at this instant.
    Until(Instant),
    /// No first request within the header timeout.
    HeaderTimeout,
    /// No new request within the idle timeout.
    Idle,
}

impl Tracker {
    pub(crate) fn new() -> Tracker {
        Tracker {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Registers a connection that starts waiting for its first request now.
    pub(crate) fn open(self: &Arc<Self>) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            waiting_since: AtomicU64::new(millis_since(self.epoch)),
            started: AtomicU64::new(0),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
        });
        self.lock().insert(conn.id, conn.clone());
        conn
    }

    /// Forgets a closed connection.
    pub(crate) fn close(&self, conn: &Conn) {
        self.lock().remove(&conn.id);
    }

    /// Asks a connection without a request in flight to close: one that never sent a
    /// request if there is one (the one that has waited longest), else the idle
    /// keep-alive connection that has waited longest; false when every connection is
    /// busy with a request.
    pub(crate) fn evict_longest_waiting(&self) -> bool {
        let open = self.lock();
        // Never-started connections go first: under a flood of new connections that
        // send nothing, the older ones are already being evicted, and the attacker's
        // newest connection has waited less than a client's keep-alive connection
        // between two requests (found by bench/soak/serve.py: well-behaved clients lost
        // their connections).
        let oldest = open
            .values()
            .filter(|c| c.is_waiting() && !c.evicting.load(Ordering::Relaxed))
            .min_by_key(|c| {
                (
                    c.started.load(Ordering::Relaxed) > 0,
                    c.waiting_since.load(Ordering::Relaxed),
                )
            });
        match oldest {
            Some(c) => {
                c.evicting.store(true, Ordering::Relaxed);
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Conn {
    /// No request in flight (the connection holds its slot only by waiting).
    pub(crate) fn is_waiting(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Called when the eviction request was declined (a request started meanwhile).
    pub(crate) fn keep(&self) {
        self.evicting.store(false, Ordering::Relaxed);
    }

    /// Marks a request whose headers have arrived; the guard marks its end when dropped.
    pub(crate) fn start_request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// Whether the connection may stay open at `now`, and until when.
    pub(crate) fn verdict(&self, limits: &ConnectionLimits, now: Instant) -> Verdict {
        if !self.is_waiting() {
            // Busy: a response is being produced or sent; look again later.
            return Verdict::Until(now + limits.idle_timeout);
        }
        let since = self.epoch + Duration::from_millis(self.waiting_since.load(Ordering::Acquire));
        // The first request's headers must arrive within the header timeout (a client
        // that connects and trickles, or sends nothing); later ones within the idle one.
        let (limit, verdict) = if self.started.load(Ordering::Relaxed) == 0 {
            (limits.header_timeout, Verdict::HeaderTimeout)
        } else {
            (limits.idle_timeout, Verdict::Idle)
        };
        let deadline = since + limit;
        if now >= deadline {
            verdict
        } else {
            Verdict::Until(deadline)
        }
    }

    fn end_request(&self) {
        // Record the new waiting start before the count drops to zero, so that the
        // accept loop never sees a waiting connection with a stale start.
        self.waiting_since
            .store(millis_since(self.epoch), Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Marks the end of a request when dropped (with its response body).
#[derive(Debug)]
pub(crate) struct RequestGuard(Arc<Conn>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// A response body that holds its request's guard: hyper drops the body once it has
/// been sent (or the connection failed), which ends the request.
pub(crate) struct GuardedBody {
    pub(crate) inner: axum::body::Body,
    pub(crate) _guard: RequestGuard,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keep-alive connection between two requests is kept, and a newer connection
    /// that never sent a request is evicted instead (regression: the keep-alive one
    /// had waited longer, so it was picked).
    #[test]
    fn a_never_started_connection_is_evicted_before_an_idle_keep_alive_one() {
        let tracker = Arc::new(Tracker::new());
        let client = tracker.open();
        drop(client.start_request());
        // Later, by more than the clock's millisecond resolution.
        std::thread::sleep(Duration::from_millis(20));
        let attacker = tracker.open();
        assert!(tracker.evict_longest_waiting());
        assert!(attacker.evicting.load(Ordering::Relaxed));
        assert!(!client.evicting.load(Ordering::Relaxed));
        // With only the client left waiting, it is the one asked to close.
        assert!(tracker.evict_longest_waiting());
        assert!(client.evicting.load(Ordering::Relaxed));
        // Every connection busy (or already evicting): nothing to evict.
        let busy = tracker.open();
        let _guard = busy.start_request();
        assert!(!tracker.evict_longest_waiting());
    }
}
