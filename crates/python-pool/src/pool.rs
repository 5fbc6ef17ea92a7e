//! The pool: a fixed number of slots, each holding an idle worker or nothing (a worker
//! being replaced or started on demand); one call at a time per worker; a worker that
//! outlives a deadline, dies, breaks the protocol or hits `MemoryError` is killed with
//! its process group and replaced in the background, and only its call fails.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{PoolConfig, PoolSettings, Warmth};
use crate::error::{PoolError, StartError};
use crate::process::{become_subreaper, kill_group};
use crate::protocol::{Call, Hello, RawResult, Request, parse_result, request_line};
use crate::worker::{Failure, Live, Started, Worker, spawn_family, spawn_worker};

/// A supervised pool of Python workers (cheap to clone: clones share the pool).
#[derive(Clone)]
pub struct Pool {
    /// `None` for a pool of no workers.
    pub(crate) shared: Option<Arc<Shared>>,
}

/// The state all clones of a [`Pool`] share.
pub(crate) struct Shared {
    /// What workers are started from.
    pub config: PoolConfig,
    /// The number of slots.
    pub size: usize,
    slots_tx: mpsc::Sender<Option<Worker>>,
    slots_rx: tokio::sync::Mutex<mpsc::Receiver<Option<Worker>>>,
    live: Live,
    closed: AtomicBool,
    next_id: AtomicU64,
}

/// Why a call did not get a usable reply.
pub(crate) enum Broken {
    /// The reply belongs to another request.
    WrongReply(u64),
    /// The worker died or broke the protocol.
    Failed(Failure),
    /// No reply within the deadline.
    Timeout(Duration),
}

impl Pool {
    /// Starts the pool; fails with a clear message when the interpreter is missing or
    /// broken.
    ///
    /// [`Warmth::Warm`] starts every worker at once and returns as soon as one answered
    /// its handshake (the others join the pool when ready). [`Warmth::Lazy`] proves
    /// the interpreter with one handshake, lets that worker go, and starts workers
    /// only when calls need them. [`Warmth::Forked`] starts one interpreter that forks
    /// the others. A pool of 0 workers starts nothing; its calls fail with
    /// [`PoolError::Disabled`].
    pub async fn start(settings: PoolSettings, warmth: Warmth) -> Result<Pool, StartError> {
        let size = settings.workers;
        if size == 0 {
            return Ok(Pool { shared: None });
        }
        let (slots_tx, slots_rx) = mpsc::channel(size);
        let shared = Arc::new(Shared {
            config: PoolConfig::new(settings, warmth),
            size,
            slots_tx,
            slots_rx: tokio::sync::Mutex::new(slots_rx),
            live: Arc::new(Mutex::new(HashSet::new())),
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        });
        let hello = match warmth {
            Warmth::Warm => shared.start_all().await,
            Warmth::Forked => shared.start_forked().await,
            Warmth::Lazy => match spawn_worker(&shared.config, &shared.live).await {
                Ok((worker, hello)) => {
                    shared.retire(worker);
                    for _ in 0..size {
                        shared.release(None);
                    }
                    Ok(hello)
                }
                Err(e) => Err(e),
            },
        };
        let h = match hello {
            Ok(h) => h,
            Err(e) => {
                shared.shutdown();
                return Err(e);
            }
        };
        tracing::info!(
            python = %h.python,
            executable = %h.executable,
            workers = size,
            lazy = warmth == Warmth::Lazy,
            max_run_time = shared.config.max_run_time.as_secs_f64(),
            "Python worker pool ready"
        );
        Ok(Pool {
            shared: Some(shared),
        })
    }

    /// The number of workers.
    pub fn size(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.size)
    }

    /// Runs one call on a free worker and returns the function's value (as JSON).
    ///
    /// The call runs in its own task, so a caller that gives up (a client that
    /// disconnects) never leaves a worker half-way through a call.
    pub async fn call(&self, call: Call) -> Result<serde_json::Value, PoolError> {
        let name = call.name.clone();
        let raw = self.call_raw(call).await?;
        parse_result(&name, &raw)
    }

    /// Like [`Pool::call`], but returns the value's JSON as the worker wrote it, so a
    /// caller that reads it in one pass never holds a tree of a big result.
    pub async fn call_raw(&self, call: Call) -> Result<RawResult, PoolError> {
        let Some(shared) = &self.shared else {
            return Err(PoolError::Disabled { name: call.name });
        };
        let name = call.name.clone();
        tokio::spawn(shared.clone().call(call))
            .await
            .unwrap_or_else(|e| {
                Err(PoolError::Task {
                    name,
                    reason: e.to_string(),
                })
            })
    }

    /// Kills every worker (and its process group); later calls fail.
    pub fn shutdown(&self) {
        if let Some(shared) = &self.shared {
            shared.shutdown();
        }
    }

    /// Like [`Pool::shutdown`], but first gives the workers up to `grace` to come back
    /// from their calls and to have what they printed passed on: a command that exits
    /// right after its last result (`check`, which has it before the batch hands its
    /// worker back) would otherwise lose what that call printed, still in the pipe.
    pub async fn close(&self, grace: Duration) {
        let Some(shared) = &self.shared else {
            return;
        };
        let deadline = tokio::time::Instant::now() + grace;
        let mut idle = Vec::new();
        let _ = tokio::time::timeout_at(deadline, async {
            let mut slots = shared.slots_rx.lock().await;
            for _ in 0..shared.size {
                match slots.recv().await {
                    Some(slot) => idle.extend(slot),
                    None => break,
                }
            }
        })
        .await;
        shared.closed.store(true, Ordering::SeqCst);
        // Killed first, so that their pipes close together and the drains overlap.
        for worker in &idle {
            kill_group(worker.pid);
        }
        for worker in &mut idle {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            worker
                .drain_tail(left.max(Duration::from_millis(100)))
                .await;
        }
        for worker in idle {
            shared.retire(worker);
        }
        shared.shutdown();
    }
}

impl Shared {
    /// A new request id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Returns a slot to the pool.
    pub fn release(&self, slot: Option<Worker>) {
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
    pub fn retire(&self, worker: Worker) {
        worker.kill(&self.live);
    }

    /// Starts a replacement for a retired worker in the background.
    pub fn refill(self: &Arc<Self>) {
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
    async fn start_all(self: &Arc<Self>) -> Result<Hello, StartError> {
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
        Err(first_error.unwrap_or_else(|| StartError::new("no Python worker started")))
    }

    /// Starts one worker that forks the others after its start-up; returns its
    /// handshake, or the error when it did not start. A copy that fails leaves its slot
    /// empty, to be filled by a worker started on demand.
    async fn start_forked(self: &Arc<Self>) -> Result<Hello, StartError> {
        become_subreaper();
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
    fn seat(&self, started: Started) -> Result<Hello, StartError> {
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

    /// Takes a free worker within `limit`, starting one when its slot is empty.
    pub async fn take_worker(&self, name: &str, limit: Duration) -> Result<Worker, PoolError> {
        let name = || name.to_string();
        if self.closed.load(Ordering::SeqCst) {
            return Err(PoolError::ShuttingDown { name: name() });
        }
        let slot = async { self.slots_rx.lock().await.recv().await };
        let slot = match tokio::time::timeout(limit, slot).await {
            Ok(Some(slot)) => slot,
            Ok(None) => return Err(PoolError::Closed { name: name() }),
            Err(_) => {
                return Err(PoolError::Busy {
                    name: name(),
                    limit,
                    workers: self.size,
                });
            }
        };
        match slot {
            Some(w) => Ok(w),
            None => match spawn_worker(&self.config, &self.live).await {
                Ok((w, _)) => Ok(w),
                Err(error) => {
                    self.release(None);
                    Err(PoolError::Start {
                        name: name(),
                        error,
                    })
                }
            },
        }
    }

    /// Replaces a worker that did not answer a call properly and says why the call
    /// failed.
    pub async fn broken(
        self: &Arc<Self>,
        mut worker: Worker,
        name: &str,
        id: u64,
        why: Broken,
    ) -> PoolError {
        let pid = worker.pid;
        let name = name.to_string();
        match why {
            Broken::WrongReply(got) => {
                self.retire(worker);
                self.refill();
                PoolError::WrongReply {
                    name,
                    got,
                    expected: id,
                }
            }
            Broken::Failed(Failure::Protocol(reason)) => {
                let output = worker.output.take_tail();
                self.retire(worker);
                self.refill();
                PoolError::Protocol {
                    name,
                    reason,
                    output,
                }
            }
            Broken::Failed(Failure::Died(reason)) => {
                let output = worker.drain_tail(Duration::from_millis(300)).await;
                self.retire(worker);
                self.refill();
                tracing::warn!(generator = %name, pid, reason = %reason, "a Python worker died; replacing it");
                PoolError::Died {
                    name,
                    reason,
                    output,
                }
            }
            Broken::Timeout(limit) => {
                self.retire(worker);
                self.refill();
                tracing::warn!(generator = %name, pid, "call ran past its deadline; its Python worker was killed");
                PoolError::Timeout { name, limit }
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
    async fn call(self: Arc<Self>, call: Call) -> Result<RawResult, PoolError> {
        let name = call.name.as_str();
        let limit = call.deadline.unwrap_or(self.config.max_run_time);
        let mut worker = self.take_worker(name, limit).await?;
        let id = self.next_id();
        let line = match request_line(&Request::new(id, &call)) {
            Ok(l) => l,
            Err(e) => {
                self.release(Some(worker));
                return Err(PoolError::Encode {
                    name: name.to_string(),
                    reason: e.to_string(),
                });
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
                    generator = %name,
                    pid,
                    script_seconds = reply.secs,
                    overhead_seconds = (round_trip - reply.secs).max(0.0),
                    "Python call"
                );
                if reply.recycle {
                    self.replace_after_memory_error(worker, name);
                } else {
                    self.release(Some(worker));
                }
                return reply.into_result(name);
            }
            Ok(Ok(reply)) => Broken::WrongReply(reply.id),
            Ok(Err(f)) => Broken::Failed(f),
            Err(_) => Broken::Timeout(limit),
        };
        Err(self.broken(worker, name, id, broken).await)
    }

    /// A worker that hit `MemoryError` is not trusted with another call.
    pub fn replace_after_memory_error(self: &Arc<Self>, worker: Worker, name: &str) {
        tracing::info!(generator = %name, pid = worker.pid, "replacing a Python worker after MemoryError");
        self.retire(worker);
        self.refill();
    }
}
