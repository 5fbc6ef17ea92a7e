//! Everything httpsd does in Redis, one method per operation: reading results,
//! the reliable queue (enqueue with O(1) de-duplication, atomic completion,
//! re-queueing of jobs of dead workers) and worker heartbeats.
//!
//! Multi-key operations are Lua scripts so that each one is atomic, and every
//! timestamp comes from Redis's own clock (`TIME`), so servers and workers on
//! machines whose clocks disagree still agree on the age of a result.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;

use super::conn::COMMAND_TIMEOUT;
use super::keys::Keys;
use crate::metrics::RedisMetrics;

/// A Redis operation that failed (Redis down, timed out, or refused the command).
#[derive(Debug, thiserror::Error)]
#[error("redis {operation} failed: {reason}")]
pub struct StoreError {
    /// The operation (`lookup`, `enqueue`, ...).
    pub operation: &'static str,
    /// Why.
    pub reason: String,
}

/// The last good result of a job.
#[derive(Debug, Clone)]
pub struct StoredResult {
    /// Generation time (Redis clock, Unix seconds).
    pub updated: f64,
    /// The JSON list exactly as served.
    pub body: Bytes,
    /// The worker that made it.
    pub worker_id: Option<String>,
    /// How long the run took, in seconds.
    pub processing_time: Option<f64>,
}

/// The last failure of a job.
#[derive(Debug, Clone)]
pub struct StoredError {
    /// Failure time (Redis clock, Unix seconds).
    pub updated: f64,
    /// The HTTP status a request for it gets (500, or 404 when the worker had no such path).
    pub http_status: u16,
    /// The JSON error body, as `serve` would answer it.
    pub body: Bytes,
    /// The original's `error_details` object (JSON), with the traceback.
    pub details: Option<String>,
}

/// What Redis holds for a job, read in one round trip.
#[derive(Debug, Clone)]
pub struct Lookup {
    /// Redis's clock when it was read.
    pub now: f64,
    /// The last good result, if any.
    pub result: Option<StoredResult>,
    /// The last failure, if any.
    pub error: Option<StoredError>,
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Nothing: a fresh result appeared meanwhile.
    Fresh,
    /// Nothing: the job failed moments ago and is not retried yet.
    Failing,
    /// The job was queued.
    Queued,
    /// Nothing: the job is already queued or running.
    Pending,
    /// The job is running; it will run once more when it finishes (hard reload).
    Rerun,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Neither queued nor running.
    Idle,
    /// Waiting for a worker.
    Queued,
    /// Taken by a worker.
    Processing,
}

/// How a worker's run of a job ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A complete target list.
    Success {
        /// The JSON list exactly as it will be served.
        body: Bytes,
        /// Number of groups.
        group_count: usize,
        /// Number of targets.
        target_count: usize,
    },
    /// The path failed.
    Failure {
        /// HTTP status to answer with.
        http_status: u16,
        /// JSON error body.
        body: Vec<u8>,
        /// `error_details` JSON.
        details: String,
    },
}

/// How long an error record is kept (the original's 3600 s).
pub const ERROR_TTL_SECONDS: u64 = 3600;

const ENQUEUE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[3] ~= '1' then
  local ts = tonumber(redis.call('HGET', KEYS[1], 'updated_timestamp') or '')
  if ts and now - ts <= tonumber(ARGV[2]) then return 'fresh' end
  local ets = tonumber(redis.call('HGET', KEYS[2], 'updated_timestamp') or '')
  if ets and ((not ts) or ets > ts) and now - ets <= tonumber(ARGV[4]) then return 'failing' end
end
if redis.call('SADD', KEYS[3], ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[4], ARGV[1])
  return 'queued'
end
if ARGV[3] == '1' and not redis.call('LPOS', KEYS[4], ARGV[1]) then
  redis.call('SADD', KEYS[5], ARGV[1])
  return 'rerun'
end
return 'pending'
"#;

const COMPLETE: &str = r#"
local t = redis.call('TIME')
local now = string.format('%.6f', tonumber(t[1]) + tonumber(t[2]) / 1000000)
if ARGV[2] == 'ok' then
  redis.call('HSET', KEYS[1], 'updated_timestamp', now, 'body', ARGV[5],
    'group_count', ARGV[6], 'target_count', ARGV[7], 'worker_id', ARGV[8],
    'processing_time', ARGV[9])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
else
  redis.call('HSET', KEYS[2], 'updated_timestamp', now, 'http_status', ARGV[10],
    'body', ARGV[5], 'details', ARGV[11])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
local removed = redis.call('LREM', KEYS[3], 1, ARGV[1])
if removed > 0 then
  if redis.call('SREM', KEYS[5], ARGV[1]) == 1 then
    redis.call('LPUSH', KEYS[6], ARGV[1])
  else
    redis.call('SREM', KEYS[4], ARGV[1])
  end
end
return removed
"#;

const REQUEUE_ALL: &str = r#"
local n = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'RIGHT') do n = n + 1 end
return n
"#;

const REQUEUE_ONE: &str = r#"
if redis.call('LREM', KEYS[1], 1, ARGV[1]) > 0 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"#;

const FORGET: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('LLEN', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
  return 1
end
return 0
"#;

/// One deployment's data in Redis.
#[derive(Clone)]
pub struct Store {
    con: ConnectionManager,
    keys: Keys,
    metrics: RedisMetrics,
    enqueue: Arc<redis::Script>,
    complete: Arc<redis::Script>,
    requeue_all: Arc<redis::Script>,
    requeue_one: Arc<redis::Script>,
    forget: Arc<redis::Script>,
}

fn f64_field(v: &Option<Vec<u8>>) -> Option<f64> {
    v.as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
}

fn string_field(v: &Option<Vec<u8>>) -> Option<String> {
    v.as_deref()
        .and_then(|b| std::str::from_utf8(b).ok())
        .map(str::to_string)
}

impl Store {
    /// A store using `con` for keys under `keys`.
    pub fn new(con: ConnectionManager, keys: Keys, metrics: RedisMetrics) -> Store {
        Store {
            con,
            keys,
            metrics,
            enqueue: Arc::new(redis::Script::new(ENQUEUE)),
            complete: Arc::new(redis::Script::new(COMPLETE)),
            requeue_all: Arc::new(redis::Script::new(REQUEUE_ALL)),
            requeue_one: Arc::new(redis::Script::new(REQUEUE_ONE)),
            forget: Arc::new(redis::Script::new(FORGET)),
        }
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Runs one operation with a time bound, counting failures.
    async fn op<T, F>(&self, operation: &'static str, fut: F) -> Result<T, StoreError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let bound = COMMAND_TIMEOUT + Duration::from_secs(1);
        let result = match tokio::time::timeout(bound, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError {
                operation,
                reason: e.to_string(),
            }),
            Err(_) => Err(StoreError {
                operation,
                reason: format!("no answer within {bound:?}"),
            }),
        };
        if result.is_err() {
            self.metrics.redis_error(operation);
        }
        result
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut con = self.con.clone();
        self.op("ping", async move {
            redis::cmd("PING").query_async::<String>(&mut con).await
        })
        .await
        .map(|_| ())
    }

    /// Reads a job's result and error with Redis's current time.
    pub async fn lookup(&self, id: &str) -> Result<Lookup, StoreError> {
        let mut con = self.con.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("TIME")
            .cmd("HMGET")
            .arg(self.keys.result(id))
            .arg(&["updated_timestamp", "body", "worker_id", "processing_time"])
            .cmd("HMGET")
            .arg(self.keys.error(id))
            .arg(&["updated_timestamp", "http_status", "body", "details"]);
        type Row = Vec<Option<Vec<u8>>>;
        let ((secs, micros), r, e): ((u64, u64), Row, Row) = self
            .op("lookup", async move { pipe.query_async(&mut con).await })
            .await?;
        let field = |row: &Row, i: usize| row.get(i).cloned().flatten();
        // The body is moved out of the reply, not copied (it can be megabytes).
        let take = |row: &mut Row, i: usize| row.get_mut(i).and_then(Option::take);
        let (mut r, mut e) = (r, e);
        let result = match (f64_field(&field(&r, 0)), take(&mut r, 1)) {
            (Some(updated), Some(body)) => Some(StoredResult {
                updated,
                body: Bytes::from(body),
                worker_id: string_field(&field(&r, 2)),
                processing_time: f64_field(&field(&r, 3)),
            }),
            _ => None,
        };
        let error = match (f64_field(&field(&e, 0)), take(&mut e, 2)) {
            (Some(updated), Some(body)) => Some(StoredError {
                updated,
                http_status: f64_field(&field(&e, 1)).map_or(500, |s| s as u16),
                body: Bytes::from(body),
                details: string_field(&field(&e, 3)),
            }),
            _ => None,
        };
        Ok(Lookup {
            now: secs as f64 + micros as f64 / 1e6,
            result,
            error,
        })
    }

    /// Redis's clock and the generation time of a job's result, without its body: a
    /// server that holds that very result in memory need not fetch it again.
    pub async fn peek(&self, id: &str) -> Result<(f64, Option<f64>), StoreError> {
        let mut con = self.con.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("TIME")
            .cmd("HGET")
            .arg(self.keys.result(id))
            .arg("updated_timestamp");
        let ((secs, micros), r): ((u64, u64), Option<f64>) = self
            .op("peek", async move { pipe.query_async(&mut con).await })
            .await?;
        Ok((secs as f64 + micros as f64 / 1e6, r))
    }

    /// The generation times of a job's result and error (cheap polling while waiting).
    pub async fn stamps(&self, id: &str) -> Result<(Option<f64>, Option<f64>), StoreError> {
        let mut con = self.con.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("HGET")
            .arg(self.keys.result(id))
            .arg("updated_timestamp")
            .cmd("HGET")
            .arg(self.keys.error(id))
            .arg("updated_timestamp");
        let (r, e): (Option<f64>, Option<f64>) = self
            .op("poll", async move { pipe.query_async(&mut con).await })
            .await?;
        Ok((r, e))
    }

    /// Queues a job unless it is fresh, failing recently, or already queued/running.
    ///
    /// `force` (hard reload) skips the freshness checks and, when the job is running,
    /// asks for one more run after it.
    pub async fn enqueue(
        &self,
        id: &str,
        fresh_seconds: f64,
        error_retry_seconds: f64,
        force: bool,
    ) -> Result<Enqueued, StoreError> {
        let mut con = self.con.clone();
        let mut inv = self.enqueue.prepare_invoke();
        inv.key(self.keys.result(id))
            .key(self.keys.error(id))
            .key(self.keys.pending())
            .key(self.keys.queue())
            .key(self.keys.rerun())
            .arg(id)
            .arg(fresh_seconds)
            .arg(if force { "1" } else { "0" })
            .arg(error_retry_seconds);
        let s: String = self
            .op("enqueue", async move { inv.invoke_async(&mut con).await })
            .await?;
        Ok(match s.as_str() {
            "fresh" => Enqueued::Fresh,
            "failing" => Enqueued::Failing,
            "queued" => Enqueued::Queued,
            "rerun" => Enqueued::Rerun,
            _ => Enqueued::Pending,
        })
    }

    /// Deletes a job's result and error (hard reload).
    pub async fn delete(&self, id: &str) -> Result<(bool, bool), StoreError> {
        let mut con = self.con.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL")
            .arg(self.keys.result(id))
            .cmd("DEL")
            .arg(self.keys.error(id));
        let (a, b): (u64, u64) = self
            .op("delete", async move { pipe.query_async(&mut con).await })
            .await?;
        Ok((a > 0, b > 0))
    }

    /// Whether a job is queued, running, or neither.
    pub async fn job_state(&self, id: &str) -> Result<JobState, StoreError> {
        let mut con = self.con.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("SISMEMBER")
            .arg(self.keys.pending())
            .arg(id)
            .cmd("LPOS")
            .arg(self.keys.queue())
            .arg(id);
        let (pending, pos): (bool, Option<i64>) = self
            .op("job_state", async move { pipe.query_async(&mut con).await })
            .await?;
        Ok(match (pending, pos) {
            (_, Some(_)) => JobState::Queued,
            (true, None) => JobState::Processing,
            (false, None) => JobState::Idle,
        })
    }

    /// Jobs queued, and jobs queued or running.
    pub async fn queue_lengths(&self) -> Result<(u64, u64), StoreError> {
        let mut con = self.con.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("LLEN")
            .arg(self.keys.queue())
            .cmd("SCARD")
            .arg(self.keys.pending());
        self.op(
            "queue_lengths",
            async move { pipe.query_async(&mut con).await },
        )
        .await
    }

    /// Records a finished job: its result or error, then removes it from the worker's
    /// processing list and the pending set (or queues it again if a rerun was asked).
    ///
    /// Returns false when the job was no longer in the worker's list (it was recovered
    /// by another worker meanwhile); the result is stored anyway.
    pub async fn complete(
        &self,
        worker: &str,
        id: &str,
        outcome: &Outcome,
        processing_time: Duration,
        result_ttl: u64,
    ) -> Result<bool, StoreError> {
        let mut con = self.con.clone();
        let mut inv = self.complete.prepare_invoke();
        inv.key(self.keys.result(id))
            .key(self.keys.error(id))
            .key(self.keys.processing(worker))
            .key(self.keys.pending())
            .key(self.keys.rerun())
            .key(self.keys.queue())
            .arg(id);
        match outcome {
            Outcome::Success {
                body,
                group_count,
                target_count,
            } => {
                inv.arg("ok")
                    .arg(result_ttl.max(1))
                    .arg(ERROR_TTL_SECONDS)
                    .arg(body.as_ref())
                    .arg(*group_count)
                    .arg(*target_count)
                    .arg(worker)
                    .arg(processing_time.as_secs_f64())
                    .arg(0)
                    .arg("");
            }
            Outcome::Failure {
                http_status,
                body,
                details,
            } => {
                inv.arg("err")
                    .arg(result_ttl.max(1))
                    .arg(ERROR_TTL_SECONDS)
                    .arg(body.as_slice())
                    .arg(0)
                    .arg(0)
                    .arg(worker)
                    .arg(processing_time.as_secs_f64())
                    .arg(*http_status)
                    .arg(details.as_str());
            }
        }
        let removed: i64 = self
            .op("complete", async move { inv.invoke_async(&mut con).await })
            .await?;
        Ok(removed > 0)
    }

    /// Moves every job of `worker`'s processing list back to the head of the queue.
    pub async fn requeue_all(&self, worker: &str) -> Result<u64, StoreError> {
        let mut con = self.con.clone();
        let mut inv = self.requeue_all.prepare_invoke();
        inv.key(self.keys.processing(worker)).key(self.keys.queue());
        let n: u64 = self
            .op("requeue", async move { inv.invoke_async(&mut con).await })
            .await?;
        if n > 0 {
            self.metrics.jobs_requeued.inc_by(n);
        }
        Ok(n)
    }

    /// Moves one job of `worker`'s processing list back to the head of the queue.
    pub async fn requeue_one(&self, worker: &str, id: &str) -> Result<bool, StoreError> {
        let mut con = self.con.clone();
        let mut inv = self.requeue_one.prepare_invoke();
        inv.key(self.keys.processing(worker))
            .key(self.keys.queue())
            .arg(id);
        let n: i64 = self
            .op("requeue", async move { inv.invoke_async(&mut con).await })
            .await?;
        if n > 0 {
            self.metrics.jobs_requeued.inc();
        }
        Ok(n > 0)
    }

    /// Refreshes the heartbeats of this process's workers.
    pub async fn heartbeat(&self, beats: &[Heartbeat], ttl: Duration) -> Result<(), StoreError> {
        let mut con = self.con.clone();
        let mut pipe = redis::pipe();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        pipe.atomic();
        for b in beats {
            let key = self.keys.worker(&b.worker_id);
            pipe.cmd("HSET")
                .arg(&key)
                .arg("instance")
                .arg(&b.instance)
                .arg("host")
                .arg(&b.host)
                .arg("pid")
                .arg(std::process::id())
                .arg("job")
                .arg(b.job.as_deref().unwrap_or(""))
                .arg("job_started")
                .arg(b.job_started.unwrap_or(0.0))
                .ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
            // Registered after the heartbeat exists, so the cleaner never sees it dead.
            pipe.cmd("SADD")
                .arg(self.keys.workers())
                .arg(&b.worker_id)
                .ignore();
        }
        self.op("heartbeat", async move {
            pipe.query_async::<()>(&mut con).await
        })
        .await
    }

    /// The `instance` token of a worker id's live heartbeat, if it has one.
    pub async fn heartbeat_instance(&self, worker: &str) -> Result<Option<String>, StoreError> {
        let mut con = self.con.clone();
        let key = self.keys.worker(worker);
        self.op("heartbeat", async move {
            redis::cmd("HGET")
                .arg(key)
                .arg("instance")
                .query_async(&mut con)
                .await
        })
        .await
    }

    /// Every registered worker id with, for the live ones, its current job and start time.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, StoreError> {
        let mut con = self.con.clone();
        let key = self.keys.workers();
        let ids: Vec<String> = self
            .op("workers", async move {
                redis::cmd("SMEMBERS").arg(key).query_async(&mut con).await
            })
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut con = self.con.clone();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(self.keys.worker(id))
                .arg(&["instance", "job", "job_started"]);
        }
        let rows: Vec<Vec<Option<String>>> = self
            .op("workers", async move { pipe.query_async(&mut con).await })
            .await?;
        Ok(ids
            .into_iter()
            .zip(rows)
            .map(|(worker_id, row)| {
                let alive = row.first().is_some_and(Option::is_some);
                let job = row.get(1).cloned().flatten().filter(|j| !j.is_empty());
                let job_started = row
                    .get(2)
                    .cloned()
                    .flatten()
                    .and_then(|s| s.parse::<f64>().ok())
                    .filter(|t| *t > 0.0);
                WorkerInfo {
                    worker_id,
                    alive,
                    job,
                    job_started,
                }
            })
            .collect())
    }

    /// Forgets a dead worker id once its processing list is empty (atomically, so a
    /// worker that registers at the same moment is not forgotten).
    pub async fn forget_worker(&self, worker: &str) -> Result<bool, StoreError> {
        let mut con = self.con.clone();
        let mut inv = self.forget.prepare_invoke();
        inv.key(self.keys.worker(worker))
            .key(self.keys.processing(worker))
            .key(self.keys.workers())
            .arg(worker);
        let n: i64 = self
            .op(
                "forget_worker",
                async move { inv.invoke_async(&mut con).await },
            )
            .await?;
        Ok(n > 0)
    }

    /// Removes this process's worker id at shutdown (after handing its jobs back).
    pub async fn retire_worker(&self, worker: &str) -> Result<(), StoreError> {
        let mut con = self.con.clone();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(self.keys.worker(worker))
            .ignore()
            .cmd("SREM")
            .arg(self.keys.workers())
            .arg(worker)
            .ignore();
        self.op("retire_worker", async move {
            pipe.query_async::<()>(&mut con).await
        })
        .await
    }

    /// Length of a worker's processing list.
    pub async fn processing_len(&self, worker: &str) -> Result<u64, StoreError> {
        let mut con = self.con.clone();
        let key = self.keys.processing(worker);
        self.op("processing_len", async move {
            redis::cmd("LLEN").arg(key).query_async(&mut con).await
        })
        .await
    }
}

/// What one worker tells Redis about itself on each heartbeat.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// The worker id.
    pub worker_id: String,
    /// A token unique to this process, to detect two processes using one id.
    pub instance: String,
    /// Host name, for operators.
    pub host: String,
    /// The job it runs now.
    pub job: Option<String>,
    /// When that job started (Unix seconds, this machine's clock).
    pub job_started: Option<f64>,
}

/// A registered worker as the stale-job cleaner sees it.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// The worker id.
    pub worker_id: String,
    /// Its heartbeat has not expired.
    pub alive: bool,
    /// The job it runs now.
    pub job: Option<String>,
    /// When that job started.
    pub job_started: Option<f64>,
}
