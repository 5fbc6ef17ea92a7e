//! Batches: many modules called the same way (check's whole tree), sent as batches
//! spread over the workers in lanes, one round trip per batch. The worker answers one
//! line per module as each is done, so a module still fails alone (its own deadline,
//! its own crash) and the rest of its batch is run on another worker.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::error::PoolError;
use crate::pool::{Broken, Pool, Shared};
use crate::protocol::{BatchRequest, Entry, parse_result, request_line};
use crate::worker::Worker;

/// Batches sent to a worker at once: it starts the next one while the pool is still
/// reading the replies of the last (which takes up to a poll when output is polled).
const BATCHES_IN_FLIGHT: usize = 3;

/// First batch of a lane when the workers' output is polled.
const POLLED_FIRST_BATCH: usize = 16;

/// Longest batch sent to one worker.
const MAX_BATCH: usize = 64;

/// A batch that took less than this grows; a slower one shrinks back to one module,
/// so slow modules spread over the workers and fast ones pay few round trips.
const FAST_BATCH: Duration = Duration::from_millis(25);

/// One module of a batch.
#[derive(Debug, Clone)]
pub struct BatchItem {
    /// The caller's number for it, echoed in its events.
    pub index: usize,
    /// Its name in messages and output attribution.
    pub name: String,
    /// Its file (an absolute path).
    pub module: String,
}

/// Progress of [`Pool::run_batch`].
#[derive(Debug)]
pub enum BatchEvent {
    /// The item with this index started running.
    Started(usize),
    /// It finished: its value and its run time.
    Done(usize, Result<serde_json::Value, PoolError>, Duration),
}

/// Why a batch ended early.
enum BatchBreak {
    /// The item that broke it (its index, name and start) and why.
    Broken(usize, String, Instant, Broken),
    /// This item hit `MemoryError` (its reply was reported): the worker must go.
    Recycle(String),
}

/// How a batch ended early, and the items it did not run.
type BatchFailure = (BatchBreak, Vec<BatchItem>);

/// Takes the next batch off the queue: at most `size` items, and at most half of a
/// fair share of what is left, so the other lanes keep work.
fn take_chunk(queue: &Mutex<VecDeque<BatchItem>>, lanes: usize, size: usize) -> Vec<BatchItem> {
    let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
    let n = size.min(q.len().div_ceil(lanes * 2)).max(1).min(q.len());
    q.drain(..n).collect()
}

/// What every lane of one run shares.
struct Run {
    pool: Arc<Shared>,
    entry: Arc<Entry>,
    queue: Mutex<VecDeque<BatchItem>>,
    lanes: usize,
    events: mpsc::UnboundedSender<BatchEvent>,
}

impl Pool {
    /// Calls every item's module as `entry` says (without parameters), in batches
    /// spread over the workers, and reports each one's start and result on the
    /// returned channel.
    ///
    /// Each item has its own deadline (the pool's `max_run_time`): an item past it
    /// fails alone, its worker is killed, and the rest of its batch runs elsewhere;
    /// the same holds for an item that crashes its worker.
    pub fn run_batch(
        &self,
        items: Vec<BatchItem>,
        entry: Arc<Entry>,
    ) -> mpsc::UnboundedReceiver<BatchEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        let Some(pool) = &self.shared else {
            for item in items {
                let e = PoolError::Disabled { name: item.name };
                let _ = tx.send(BatchEvent::Done(item.index, Err(e), Duration::ZERO));
            }
            return rx;
        };
        let lanes = pool.size.min(items.len()).max(1);
        let run = Arc::new(Run {
            pool: pool.clone(),
            entry,
            queue: Mutex::new(items.into()),
            lanes,
            events: tx,
        });
        for _ in 0..lanes {
            tokio::spawn(run.clone().lane());
        }
        rx
    }
}

impl Run {
    fn done(&self, index: usize, result: Result<serde_json::Value, PoolError>, took: Duration) {
        let _ = self.events.send(BatchEvent::Done(index, result, took));
    }

    /// One lane: takes batches off the shared queue until it is empty.
    async fn lane(self: Arc<Self>) {
        let limit = self.pool.config.max_run_time;
        // Polled output is seen up to a poll late, so a batch must outlast that to keep
        // the worker fed: polled lanes start bigger.
        let mut size = if self.pool.config.polled {
            POLLED_FIRST_BATCH
        } else {
            1
        };
        loop {
            let chunk = take_chunk(&self.queue, self.lanes, size);
            if chunk.is_empty() {
                return;
            }
            let worker = match self.pool.take_worker("", limit).await {
                Ok(w) => w,
                Err(e) => {
                    for item in chunk {
                        self.done(item.index, Err(e.renamed(item.name)), Duration::ZERO);
                    }
                    continue;
                }
            };
            let rest = self.run_batches(worker, chunk, &mut size).await;
            if !rest.is_empty() {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                for item in rest.into_iter().rev() {
                    q.push_front(item);
                }
            }
        }
    }

    /// Runs batches on `worker`, starting with `chunk` and taking more off the queue
    /// while it lasts. The next batch is always sent before the current one is done,
    /// so the worker never waits for the pool between two batches. Returns the items
    /// it did not run because the worker had to go (a timeout, a death, a
    /// `MemoryError`); the worker is released otherwise.
    async fn run_batches(
        &self,
        mut worker: Worker,
        chunk: Vec<BatchItem>,
        size: &mut usize,
    ) -> Vec<BatchItem> {
        let pool = &self.pool;
        let mut sent: VecDeque<(u64, Vec<BatchItem>)> = VecDeque::new();
        let mut next = Some(chunk);
        // A batch that could not be sent (the worker is gone): it runs elsewhere.
        let mut unsent: Vec<BatchItem> = Vec::new();
        loop {
            // Keep one batch queued in the worker behind the one it runs.
            while sent.len() < BATCHES_IN_FLIGHT && unsent.is_empty() {
                let Some(chunk) = next.take().or_else(|| {
                    let c = take_chunk(&self.queue, self.lanes, *size);
                    (!c.is_empty()).then_some(c)
                }) else {
                    break;
                };
                let id = pool.next_id();
                let modules = chunk.iter().map(|i| i.module.as_str()).collect();
                let line = match request_line(&BatchRequest::new(id, modules, &self.entry)) {
                    Ok(l) => l,
                    Err(e) => {
                        for item in chunk {
                            let e = PoolError::Encode {
                                name: item.name,
                                reason: e.to_string(),
                            };
                            self.done(item.index, Err(e), Duration::ZERO);
                        }
                        continue;
                    }
                };
                match worker.send(&line).await {
                    Ok(()) => sent.push_back((id, chunk)),
                    // The worker is gone (a module of the batch it runs killed it,
                    // say): that batch's replies say which, this one runs elsewhere.
                    Err(_) => unsent = chunk,
                }
            }
            let Some((id, chunk)) = sent.pop_front() else {
                if unsent.is_empty() {
                    pool.release(Some(worker));
                } else {
                    pool.retire(worker);
                    pool.refill();
                }
                return unsent;
            };
            let started = Instant::now();
            let count = chunk.len();
            match self.receive_batch(&mut worker, id, chunk).await {
                Ok(()) => {
                    *size = if started.elapsed() < FAST_BATCH {
                        (count * 2).min(MAX_BATCH)
                    } else {
                        1
                    };
                }
                Err((why, rest)) => {
                    match why {
                        BatchBreak::Broken(index, name, started, why) => {
                            let e = pool.broken(worker, &name, id, why).await;
                            self.done(index, Err(e), started.elapsed());
                        }
                        BatchBreak::Recycle(name) => pool.replace_after_memory_error(worker, &name),
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
        &self,
        worker: &mut Worker,
        id: u64,
        chunk: Vec<BatchItem>,
    ) -> Result<(), BatchFailure> {
        let limit = self.pool.config.max_run_time;
        let mut items = chunk.into_iter().enumerate();
        while let Some((k, item)) = items.next() {
            let _ = self.events.send(BatchEvent::Started(item.index));
            let started = Instant::now();
            let broken = match tokio::time::timeout(limit, worker.receive()).await {
                Ok(Ok(reply)) if reply.id == id && reply.index == Some(k) => {
                    let took = Duration::try_from_secs_f64(reply.secs)
                        .unwrap_or_else(|_| started.elapsed());
                    let recycle = reply.recycle;
                    // Check mode keeps trees: its files are small and read in full.
                    let result = reply
                        .into_result(&item.name)
                        .and_then(|raw| parse_result(&item.name, &raw));
                    self.done(item.index, result, took);
                    if recycle {
                        return Err((
                            BatchBreak::Recycle(item.name),
                            items.map(|(_, i)| i).collect(),
                        ));
                    }
                    continue;
                }
                Ok(Ok(reply)) => Broken::WrongReply(reply.id),
                Ok(Err(f)) => Broken::Failed(f),
                Err(_) => Broken::Timeout(limit),
            };
            return Err((
                BatchBreak::Broken(item.index, item.name, started, broken),
                items.map(|(_, i)| i).collect(),
            ));
        }
        Ok(())
    }
}
