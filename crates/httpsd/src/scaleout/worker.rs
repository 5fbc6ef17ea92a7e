//! `worker-only`: worker loops that take jobs from the Redis queue with an atomic
//! `BLMOVE` into their own processing list, run them with the same engine as `serve`
//! (static files, Python pool, executables), store the result or the error, and
//! remove the job. A heartbeat per worker lets any worker process re-queue the jobs
//! of a dead one; a graceful shutdown finishes running jobs within a bound and hands
//! back the rest. Also serves the worker's metrics.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use redis::Client;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::conn;
use super::keys::{Keys, parse_job_id};
use super::store::{Heartbeat, Outcome, Store};
use crate::engine::{Engine, start_tree};
use crate::error::PathError;
use crate::http::{with_metrics_routes, with_ops_layers};
use crate::metrics::{Metrics, RedisMetrics, WorkerLabel, WorkerStatusLabels};
use crate::runner::RunnerSettings;
use crate::security::SecuritySettings;

/// How long a worker keeps retrying to store a finished job before leaving it to the
/// stale-job recovery.
const STORE_RETRY: Duration = Duration::from_secs(30);
/// Seconds of BLMOVE blocking; bounds how long a stop takes to be noticed.
const POP_BLOCK_SECONDS: f64 = 1.0;

/// Validated settings of `worker-only` (built by `cli::scaleout`).
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Canonical root directory.
    pub root: PathBuf,
    /// The ids of this process's worker loops.
    pub worker_ids: Vec<String>,
    /// Redis URL and TLS files.
    pub redis: conn::RedisTarget,
    /// Key namespace.
    pub keys: Keys,
    /// Redis TTL of results: --cache-seconds plus --max-stale.
    pub result_ttl: u64,
    /// A job running longer than this on a live worker is queued again.
    pub stale_job_timeout: f64,
    /// Period of the stale-job check.
    pub stale_job_check_interval: Duration,
    /// A worker without a heartbeat for this long is dead.
    pub heartbeat_timeout: Duration,
    /// Bound on finishing running jobs at shutdown.
    pub shutdown_timeout: Duration,
    /// Largest static file.
    pub max_file_size: u64,
    /// Fallback rescan period.
    pub rescan_interval: Duration,
    /// Settings of the generator runners (the same as `serve`'s).
    pub runner: RunnerSettings,
    /// Connection limit and timeouts of the metrics server.
    pub connections: listener::ConnectionLimits,
}

/// The host name, for worker ids and heartbeats (`localhost` when unknown).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What the heartbeat reports for one worker loop.
#[derive(Debug, Default, Clone)]
struct Slot {
    /// The id is ours (no other live process uses it).
    claimed: bool,
    /// The running job and its start time.
    job: Option<(String, f64)>,
}

/// Everything the worker loops share.
struct Ctx {
    settings: WorkerSettings,
    client: Client,
    store: Store,
    engine: Arc<Engine>,
    redis_metrics: RedisMetrics,
    instance: String,
    host: String,
    slots: Mutex<HashMap<String, Slot>>,
}

impl Ctx {
    fn set_slot(&self, worker: &str, f: impl FnOnce(&mut Slot)) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        f(slots.entry(worker.to_string()).or_default());
    }

    fn beats(&self) -> Vec<Heartbeat> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .filter(|(_, s)| s.claimed)
            .map(|(id, s)| self.beat(id, s))
            .collect()
    }

    fn beat(&self, id: &str, s: &Slot) -> Heartbeat {
        Heartbeat {
            worker_id: id.to_string(),
            instance: self.instance.clone(),
            host: self.host.clone(),
            job: s.job.as_ref().map(|(j, _)| j.clone()),
            job_started: s.job.as_ref().map(|(_, t)| *t),
        }
    }
}

/// Runs `worker-only` until `shutdown` resolves; `listener` serves its metrics.
pub async fn run(
    settings: WorkerSettings,
    security: SecuritySettings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let mut metrics = Metrics::new();
    let redis_metrics = RedisMetrics::register(metrics.registry_mut());
    let metrics = Arc::new(metrics);
    let client = settings.redis.client()?;
    let store = Store::new(
        conn::manager(client.clone())?,
        settings.keys.clone(),
        redis_metrics.clone(),
    );
    let (catalog, watcher, runners) = start_tree(
        &settings.root,
        settings.max_file_size,
        settings.rescan_interval,
        &settings.runner,
        metrics.clone(),
    )
    .await?;
    let engine = Arc::new(Engine::new(catalog, runners.clone(), metrics.clone()));
    let monitor = tokio::spawn(super::health::monitor(
        store.clone(),
        redis_metrics.clone(),
        settings.redis.redacted(),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let addr = listener.local_addr()?;
    let metrics_app = Router::new().route(
        "/",
        get(|| async {
            crate::error::json_response(
                axum::http::StatusCode::OK,
                &json!({"service": "worker-metrics", "status": "healthy"}),
            )
        }),
    );
    let metrics_app = with_ops_layers(
        with_metrics_routes(metrics_app, "", metrics.clone()),
        security.policy.clone(),
    );
    let scheme = security.scheme();
    let mut metrics_stop = stop_rx.clone();
    let metrics_server = tokio::spawn(listener::run_with_tls(
        listener,
        metrics_app,
        settings.connections.clone(),
        security.tls.clone(),
        async move {
            let _ = metrics_stop.wait_for(|s| *s).await;
        },
    ));
    let ctx = Arc::new(Ctx {
        instance: format!("{}-{}-{}", hostname(), std::process::id(), unix_now()),
        host: hostname(),
        settings,
        client,
        store,
        engine,
        redis_metrics,
        slots: Mutex::new(HashMap::new()),
    });
    tracing::info!(
        redis = %ctx.settings.redis.redacted(),
        redis_prefix = %ctx.settings.keys.prefix(),
        workers = ?ctx.settings.worker_ids,
        auth = security.policy.enabled(),
        "Starting worker-only instance; worker metrics: Serving on {scheme}://{addr}/metrics"
    );
    let heartbeat = tokio::spawn(heartbeat_loop(ctx.clone()));
    let cleaner = tokio::spawn(cleaner_loop(ctx.clone()));
    let mut loops = tokio::task::JoinSet::new();
    for id in ctx.settings.worker_ids.clone() {
        loops.spawn(worker_loop(ctx.clone(), id, stop_rx.clone()));
    }
    shutdown.await;
    tracing::info!(
        timeout = ?ctx.settings.shutdown_timeout,
        "shutting down: no new jobs, finishing running ones"
    );
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(ctx.settings.shutdown_timeout, async {
        while loops.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("running jobs did not finish in time; handing them back to the queue");
        loops.abort_all();
        while loops.join_next().await.is_some() {}
    }
    cleaner.abort();
    heartbeat.abort();
    for id in &ctx.settings.worker_ids {
        // Whatever is still in our lists (an interrupted job, or one BLMOVE handed us
        // as we stopped) goes back to the queue for another worker.
        match ctx.store.requeue_all(id).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(worker_id = %id, jobs = n, "handed jobs back to the queue"),
            Err(e) => {
                tracing::warn!(worker_id = %id, error = %e, "could not hand jobs back; the stale-job recovery will")
            }
        }
        let _ = ctx.store.retire_worker(id).await;
    }
    monitor.abort();
    watcher.abort();
    runners.shutdown().await;
    let _ = metrics_server.await;
    tracing::info!("Worker pool stopped");
    Ok(())
}

/// Refreshes every claimed worker's heartbeat a few times per timeout.
async fn heartbeat_loop(ctx: Arc<Ctx>) {
    let period = (ctx.settings.heartbeat_timeout / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let beats = ctx.beats();
        if !beats.is_empty()
            && let Err(e) = ctx
                .store
                .heartbeat(&beats, ctx.settings.heartbeat_timeout)
                .await
        {
            tracing::debug!(error = %e, "heartbeat failed");
        }
        tokio::time::sleep(period).await;
    }
}

/// Re-queues the jobs of dead workers and of jobs stuck for longer than
/// --stale-job-timeout: at startup, then every --stale-job-check-interval.
async fn cleaner_loop(ctx: Arc<Ctx>) {
    loop {
        if let Err(e) = clean_once(&ctx).await {
            tracing::debug!(error = %e, "stale-job check failed");
        }
        tokio::time::sleep(ctx.settings.stale_job_check_interval).await;
    }
}

async fn clean_once(ctx: &Ctx) -> Result<(), super::store::StoreError> {
    let now = unix_now();
    for w in ctx.store.workers().await? {
        if !w.alive {
            let n = ctx.store.requeue_all(&w.worker_id).await?;
            if n > 0 {
                ctx.redis_metrics.stale_jobs_cleaned.inc_by(n);
                tracing::warn!(worker_id = %w.worker_id, jobs = n, "worker is gone (no heartbeat); its jobs are queued again");
            }
            ctx.store.forget_worker(&w.worker_id).await?;
            continue;
        }
        if let (Some(job), Some(started)) = (&w.job, w.job_started)
            && now - started > ctx.settings.stale_job_timeout
            && ctx.store.requeue_one(&w.worker_id, job).await?
        {
            ctx.redis_metrics.stale_jobs_cleaned.inc();
            tracing::warn!(worker_id = %w.worker_id, job = %job, running_seconds = now - started, "job exceeded --stale-job-timeout; queued again");
        }
    }
    Ok(())
}

/// One worker loop: claim the id, then pop, run and complete jobs until stopped.
async fn worker_loop(ctx: Arc<Ctx>, id: String, mut stop: watch::Receiver<bool>) {
    let keys = &ctx.settings.keys;
    let (queue, processing) = (keys.queue(), keys.processing(&id));
    if !claim(&ctx, &id, &mut stop).await {
        return;
    }
    ctx.redis_metrics
        .worker_started
        .get_or_create(&WorkerLabel {
            worker_id: id.clone(),
        })
        .inc();
    tracing::info!(worker_id = %id, "worker started");
    let mut con = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stop.borrow() {
            break;
        }
        let c = match con.as_mut() {
            Some(c) => c,
            None => match conn::blocking(&ctx.client).await {
                Ok(c) => {
                    backoff = Duration::from_millis(100);
                    con.insert(c)
                }
                Err(e) => {
                    ctx.redis_metrics.redis_error("connect");
                    tracing::debug!(worker_id = %id, error = %e, "cannot connect to Redis; retrying");
                    if sleep_or_stop(backoff, &mut stop).await {
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
            },
        };
        let mut cmd = redis::cmd("BLMOVE");
        cmd.arg(&queue)
            .arg(&processing)
            .arg("RIGHT")
            .arg("LEFT")
            .arg(POP_BLOCK_SECONDS);
        let pop = cmd.query_async::<Option<String>>(c);
        // A half-open connection never answers: bound the blocking pop ourselves. A
        // stop is only noticed between pops (at most POP_BLOCK_SECONDS later): giving
        // up on a pop in flight could leave a job that Redis moved just then unseen.
        let bound = Duration::from_secs_f64(POP_BLOCK_SECONDS) + conn::COMMAND_TIMEOUT;
        let popped = tokio::time::timeout(bound, pop).await;
        match popped {
            Ok(Ok(Some(job))) => run_job(&ctx, &id, job).await,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                ctx.redis_metrics.redis_error("pop");
                tracing::debug!(worker_id = %id, error = %e, "BLMOVE failed; reconnecting");
                con = None;
                if sleep_or_stop(backoff, &mut stop).await {
                    break;
                }
            }
            Err(_) => {
                ctx.redis_metrics.redis_error("pop");
                con = None;
            }
        }
    }
    tracing::info!(worker_id = %id, "worker stopped");
}

/// Sleeps for `d`; true if a stop was requested meanwhile.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Makes the worker id ours: waits while another live process's heartbeat holds it,
/// then re-queues what a previous life of this id left in its processing list.
async fn claim(ctx: &Ctx, id: &str, stop: &mut watch::Receiver<bool>) -> bool {
    let mut warned = false;
    loop {
        if *stop.borrow() {
            return false;
        }
        match ctx.store.heartbeat_instance(id).await {
            Ok(Some(other)) if other != ctx.instance => {
                if !warned {
                    tracing::warn!(worker_id = %id, "this worker id is in use by another live worker; waiting for its heartbeat to expire");
                    warned = true;
                }
            }
            Ok(_) => {
                ctx.set_slot(id, |s| s.claimed = true);
                let beat = ctx.beat(id, &Slot::default());
                if ctx
                    .store
                    .heartbeat(&[beat], ctx.settings.heartbeat_timeout)
                    .await
                    .is_ok()
                {
                    match ctx.store.requeue_all(id).await {
                        Ok(0) => {}
                        Ok(n) => {
                            ctx.redis_metrics.stale_jobs_cleaned.inc_by(n);
                            tracing::warn!(worker_id = %id, jobs = n, "re-queued jobs left by a previous run of this worker id");
                        }
                        Err(_) => {}
                    }
                    return true;
                }
                ctx.set_slot(id, |s| s.claimed = false);
            }
            Err(_) => {}
        }
        if sleep_or_stop(Duration::from_millis(500), stop).await {
            return false;
        }
    }
}

/// Runs one job and records its outcome.
async fn run_job(ctx: &Ctx, worker: &str, job: String) {
    ctx.set_slot(worker, |s| s.job = Some((job.clone(), unix_now())));
    let started = Instant::now();
    tracing::debug!(worker_id = %worker, job = %job, "job started");
    let (rel, result) = match parse_job_id(&job) {
        Ok((sub, params)) => {
            let rel = sub.as_rel();
            let r = ctx
                .engine
                .run_path(&sub, &params)
                .await
                .and_then(|run| run.into_body());
            (rel, r.map_err(|e| (e, params)))
        }
        Err(e) => (
            job.clone(),
            Err((
                PathError::BadRequest(e.to_string()),
                crate::params::Params::empty(),
            )),
        ),
    };
    let elapsed = started.elapsed();
    let (outcome, status) = match result {
        Ok(body) => (
            Outcome::Success {
                body: body.bytes,
                group_count: body.group_count,
                target_count: body.target_count,
            },
            "success",
        ),
        Err((err, params)) => {
            tracing::warn!(worker_id = %worker, job = %job, error = %err, "job failed");
            (
                Outcome::Failure {
                    http_status: err.status().as_u16(),
                    body: crate::pyjson::to_body(&err.body(&rel)),
                    details: error_details(&err, worker, &job, &rel, &params, elapsed).to_string(),
                },
                "error",
            )
        }
    };
    let deadline = Instant::now() + STORE_RETRY;
    let stored = loop {
        match ctx
            .store
            .complete(worker, &job, &outcome, elapsed, ctx.settings.result_ttl)
            .await
        {
            Ok(ours) => {
                if !ours {
                    tracing::info!(worker_id = %worker, job = %job, "job had been re-queued meanwhile; result stored anyway");
                }
                break true;
            }
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(worker_id = %worker, job = %job, error = %e, "cannot store the result yet; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                tracing::error!(worker_id = %worker, job = %job, error = %e, "cannot store the result; the job stays in the processing list for recovery");
                break false;
            }
        }
    };
    let status = if stored { status } else { "cache_error" };
    if status == "success" {
        ctx.redis_metrics.finished_jobs.inc();
    }
    ctx.redis_metrics
        .worker_jobs
        .get_or_create(&WorkerStatusLabels {
            worker_id: worker.to_string(),
            status: status.to_string(),
        })
        .inc();
    ctx.set_slot(worker, |s| s.job = None);
    tracing::info!(worker_id = %worker, job = %job, status, seconds = elapsed.as_secs_f64(), "job done");
}

/// The original's `error_details` object, with every failing generator.
fn error_details(
    err: &PathError,
    worker: &str,
    job: &str,
    rel: &str,
    params: &crate::params::Params,
    elapsed: Duration,
) -> serde_json::Value {
    let (error_type, traceback, generators) = match err {
        PathError::Generators(failed) => {
            let kind = failed
                .first()
                .map(|f| serde_json::to_value(f.error.kind).unwrap_or_default())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "generator".into());
            let tb: Vec<String> = failed
                .iter()
                .map(|f| match &f.error.traceback {
                    Some(t) => format!("{}:\n{t}", f.generator),
                    None => format!("{}: {}", f.generator, f.error.message),
                })
                .collect();
            (
                kind,
                tb.join("\n"),
                serde_json::to_value(failed).unwrap_or_default(),
            )
        }
        PathError::NotFound(_) => ("not_found".into(), String::new(), json!([])),
        PathError::BadRequest(_) => ("bad_request".into(), String::new(), json!([])),
        PathError::Unreadable { .. } => ("unreadable".into(), String::new(), json!([])),
    };
    let message = match err {
        PathError::Generators(failed) => failed
            .iter()
            .map(|f| format!("{}: {}", f.generator, f.error.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    };
    json!({
        "error_type": error_type,
        "error_message": message,
        "traceback": traceback,
        "worker_id": worker,
        "job_id": job,
        "path": rel,
        "extra_args": params.to_json(),
        "timestamp": super::frontend::iso_time(unix_now()),
        "processing_time": elapsed.as_secs_f64(),
        "generators": generators,
    })
}
