//! `server-only`: answers `GET P/targets/<path>` from Redis. Fresh results are served
//! directly; stale ones at once while a refresh is queued (bounded by --max-stale);
//! a miss is queued and waited for (up to --wait), then 503. Generator failures are
//! a 500 with the stored error. While Redis is unreachable, results this server has
//! served recently are still answered from memory, anything else is a 503.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::conn;
use super::keys::{Keys, job_id};
use super::store::{JobState, Lookup, Store, StoreError, StoredError, StoredResult};
use crate::catalog::Catalog;
use crate::error::{PathError, json_response};
use crate::http::paths::{parse_subpath, targets_subpath};
use crate::http::{with_metrics_routes, with_ops_layers};
use crate::metrics::{self, Metrics, RedisMetrics};
use crate::params::Query;
use crate::security::SecuritySettings;
use crate::settings::DEFAULT_MAX_FILE_SIZE;
use crate::tree::Selection;

/// After a failure, requests answer with that failure (no new run) for this long,
/// at most --cache-time: a broken generator is not hammered by every request.
pub const ERROR_RETRY_SECONDS: f64 = 10.0;
/// Most results remembered in memory for answering while Redis is unreachable.
const MEMORY_ENTRIES: usize = 10_000;

/// Validated settings of `server-only` (built by `cli::scaleout`).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Canonical root directory.
    pub root: PathBuf,
    /// Normalised URL prefix.
    pub prefix: String,
    /// Connection limit and timeouts.
    pub connections: listener::ConnectionLimits,
    /// Redis URL and TLS files.
    pub redis: conn::RedisTarget,
    /// Key namespace.
    pub keys: Keys,
    /// Freshness in seconds.
    pub fresh: f64,
    /// Extra seconds a stale result is served while it refreshes.
    pub max_stale: f64,
    /// How long a miss waits.
    pub wait: Duration,
    /// How long a hard reload waits.
    pub reload_timeout: Duration,
    /// Hard reload polling period.
    pub reload_poll: Duration,
    /// Fallback rescan period of the tree.
    pub rescan_interval: Duration,
}

/// A result remembered for outages (and to skip fetching a body Redis says is still
/// current): its body and when it was generated.
struct Remembered {
    updated: f64,
    generated_at: Instant,
    body: Bytes,
}

/// Shared state of the server's handlers.
pub struct ServerState {
    settings: ServerSettings,
    catalog: Arc<Catalog>,
    store: Store,
    metrics: Arc<Metrics>,
    redis_metrics: RedisMetrics,
    memory: Mutex<HashMap<String, Remembered>>,
}

/// Runs `server-only` on an already bound listener until `shutdown` resolves.
///
/// Redis need not be reachable: the server starts, logs the problem, answers 503 and
/// keeps retrying.
pub async fn run(
    settings: ServerSettings,
    security: SecuritySettings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let security = security.with_prefix(&settings.prefix);
    let mut metrics = Metrics::new();
    let redis_metrics = RedisMetrics::register(metrics.registry_mut());
    let metrics = Arc::new(metrics);
    let client = settings.redis.client()?;
    let manager = conn::manager(client)?;
    let store = Store::new(manager, settings.keys.clone(), redis_metrics.clone());
    let root = settings.root.clone();
    let m = metrics.clone();
    let catalog = Arc::new(
        tokio::task::spawn_blocking(move || Catalog::new(&root, DEFAULT_MAX_FILE_SIZE, m)).await?,
    );
    let watcher = tokio::spawn(crate::watch::run(catalog.clone(), settings.rescan_interval));
    let monitor = tokio::spawn(super::health::monitor(
        store.clone(),
        redis_metrics.clone(),
        settings.redis.redacted(),
    ));
    let addr = listener.local_addr()?;
    tracing::info!(
        redis = %settings.redis.redacted(),
        redis_prefix = %settings.keys.prefix(),
        "Starting server-only instance on {addr}; workers must be started separately to process jobs"
    );
    let scheme = security.scheme();
    tracing::info!(
        auth = security.policy.enabled(),
        "Serving on {scheme}://{addr}{}/targets",
        settings.prefix
    );
    let limits = settings.connections.clone();
    let state = Arc::new(ServerState {
        settings,
        catalog,
        store,
        metrics,
        redis_metrics,
        memory: Mutex::new(HashMap::new()),
    });
    let router = with_ops_layers(app(state), security.policy.clone());
    listener::run_with_tls(listener, router, limits, security.tls.clone(), shutdown).await?;
    watcher.abort();
    monitor.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Builds the router of `server-only`.
pub fn app(state: Arc<ServerState>) -> Router {
    with_metrics_routes(Router::new(), &state.settings.prefix, state.metrics.clone())
        .fallback(fallback_handler)
        .with_state(state)
}

async fn fallback_handler(State(state): State<Arc<ServerState>>, req: Request) -> Response {
    let rest = match targets_subpath(&state.settings.prefix, &req) {
        Ok(rest) => rest,
        Err(resp) => return *resp,
    };
    let query = Query::parse(req.uri().query());
    let rest = rest.to_string();
    targets(&state, &rest, query, req.headers()).await
}

async fn targets(
    state: &ServerState,
    raw_rest: &str,
    query: Query,
    headers: &HeaderMap,
) -> Response {
    let started = Instant::now();
    let sub = match parse_subpath(&state.metrics, raw_rest, started) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let rel = sub.as_rel();
    // The server knows the tree too: unknown paths never reach Redis or the workers.
    let snapshot = state.catalog.snapshot();
    let known = match snapshot.listing.select(&sub) {
        Selection::Generators(_) => Ok(()),
        Selection::NotFound => Err(PathError::NotFound(rel.clone())),
        Selection::Unreadable(u) => Err(PathError::Unreadable {
            dir: u.rel.clone(),
            reason: u.reason.clone(),
        }),
    };
    drop(snapshot);
    if let Err(err) = known {
        let (label, status) = match err {
            PathError::NotFound(_) => (metrics::UNKNOWN_PATH, "not_found"),
            _ => (rel.as_str(), "fail"),
        };
        state
            .metrics
            .observe_path_request(label, status, started.elapsed(), None);
        return json_response(err.status(), &err.body(&rel));
    }
    let id = job_id(&sub, &query.params);
    if query.reload {
        return reload(state, &id).await;
    }
    if query.debug {
        return debug(state, &id).await;
    }
    let wait = wait_budget(state.settings.wait, headers);
    let (response, status, targets) = normal(state, &id, &rel, wait).await;
    state
        .metrics
        .observe_path_request(&rel, status, started.elapsed(), targets);
    response
}

/// Prometheus gives up after its refresh interval: answer (503) well before that.
fn wait_budget(wait: Duration, headers: &HeaderMap) -> Duration {
    let interval = headers
        .get("x-prometheus-refresh-interval-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0);
    match interval {
        Some(s) => wait.min(Duration::from_secs_f64((s * 0.8).max(0.5))),
        None => wait,
    }
}

/// The normal flow; returns the response, the metrics status and the target count.
async fn normal(
    state: &ServerState,
    id: &str,
    rel: &str,
    wait: Duration,
) -> (Response, &'static str, Option<usize>) {
    let s = &state.settings;
    // Redis decides which result is current; when it is the one this server already
    // holds, its body (often hundreds of kB) is not transferred again.
    match state.store.peek(id).await {
        Ok((now, Some(updated))) => {
            if let Some(body) = remembered_body(state, id, updated)
                && let Some(answer) = serve_current(state, id, body, updated, now)
            {
                return answer;
            }
        }
        Ok((_, None)) => {}
        Err(e) => return from_memory(state, id, rel, &e),
    }
    let lookup = match state.store.lookup(id).await {
        Ok(l) => l,
        Err(e) => return from_memory(state, id, rel, &e),
    };
    if let Some(r) = &lookup.result {
        remember(state, id, r, lookup.now);
        if let Some(answer) = serve_current(state, id, r.body.clone(), r.updated, lookup.now) {
            return answer;
        }
        state.redis_metrics.cache_operation("expired");
    } else {
        state.redis_metrics.cache_operation("miss");
    }
    if let Some(err) = recent_error(&lookup, error_retry(s.fresh)) {
        return (stored_error_response(err), "fail", None);
    }
    if let Err(e) = state
        .store
        .enqueue(id, s.fresh, error_retry(s.fresh), false)
        .await
    {
        return from_memory(state, id, rel, &e);
    }
    let base_r = lookup.result.as_ref().map_or(f64::MIN, |r| r.updated);
    let base_e = lookup.error.as_ref().map_or(f64::MIN, |e| e.updated);
    match wait_for_new(state, id, base_r, base_e, wait, None).await {
        Ok(Some(New::Result(r, now))) => {
            remember(state, id, &r, now);
            let age = (now - r.updated).max(0.0);
            (list_response(r.body, age, "miss"), "success", None)
        }
        Ok(Some(New::Error(e))) => (stored_error_response(&e), "fail", None),
        Ok(None) => {
            let secs = wait.as_secs_f64();
            let mut resp = json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({
                    "error": format!("no result yet: a worker is generating it (waited {secs:.1}s); try again"),
                    "path": rel,
                }),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            (resp, "unavailable", None)
        }
        Err(e) => from_memory(state, id, rel, &e),
    }
}

/// Answers with a stored result that is fresh, or stale within the bound (queueing a
/// refresh that does not delay the answer); `None` when it is too old to serve.
fn serve_current(
    state: &ServerState,
    id: &str,
    body: Bytes,
    updated: f64,
    now: f64,
) -> Option<(Response, &'static str, Option<usize>)> {
    let s = &state.settings;
    let age = (now - updated).max(0.0);
    if age <= s.fresh {
        state.redis_metrics.cache_operation("hit");
        return Some((list_response(body, age, "hit"), "success", None));
    }
    if age > s.fresh + s.max_stale {
        return None;
    }
    state.redis_metrics.cache_operation("stale");
    let store = state.store.clone();
    let id = id.to_string();
    let (fresh, retry) = (s.fresh, error_retry(s.fresh));
    tokio::spawn(async move {
        if let Err(e) = store.enqueue(&id, fresh, retry, false).await {
            tracing::warn!(job = %id, error = %e, "could not queue a refresh");
        }
    });
    Some((list_response(body, age, "stale"), "success", None))
}

fn error_retry(fresh: f64) -> f64 {
    ERROR_RETRY_SECONDS.min(fresh)
}

/// The stored error if it is newer than the result and recent enough to stand.
fn recent_error(lookup: &Lookup, retry: f64) -> Option<&StoredError> {
    let e = lookup.error.as_ref()?;
    let newer = lookup.result.as_ref().is_none_or(|r| e.updated > r.updated);
    (newer && lookup.now - e.updated <= retry).then_some(e)
}

/// Something that appeared in Redis while waiting.
enum New {
    Result(StoredResult, f64),
    Error(StoredError),
}

/// Polls until a result newer than `base_r` or an error newer than `base_e` appears.
async fn wait_for_new(
    state: &ServerState,
    id: &str,
    base_r: f64,
    base_e: f64,
    wait: Duration,
    poll: Option<Duration>,
) -> Result<Option<New>, StoreError> {
    let deadline = Instant::now() + wait;
    let mut interval = poll.unwrap_or(Duration::from_millis(10));
    loop {
        let (r, e) = state.store.stamps(id).await?;
        if r.is_some_and(|t| t > base_r) || e.is_some_and(|t| t > base_e) {
            let l = state.store.lookup(id).await?;
            let newer_r = l.result.filter(|r| r.updated > base_r);
            let newer_e = l.error.filter(|e| e.updated > base_e);
            match (newer_r, newer_e) {
                (Some(r), Some(e)) if e.updated > r.updated => return Ok(Some(New::Error(e))),
                (Some(r), _) => return Ok(Some(New::Result(r, l.now))),
                (None, Some(e)) => return Ok(Some(New::Error(e))),
                (None, None) => {}
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        if poll.is_none() {
            interval = (interval * 2).min(Duration::from_millis(100));
        }
    }
}

fn list_response(body: Bytes, age: f64, cache: &'static str) -> Response {
    let mut resp = (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(header::AGE, HeaderValue::from(age.floor() as u64));
    h.insert("x-httpsd-cache", HeaderValue::from_static(cache));
    resp
}

fn stored_error_response(e: &StoredError) -> Response {
    let status = StatusCode::from_u16(e.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(e.body.clone()),
    )
        .into_response()
}

fn unavailable(rel: &str, e: &StoreError) -> (Response, &'static str, Option<usize>) {
    let mut resp = json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        &json!({"error": format!("redis unavailable: {}", e.reason), "path": rel}),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    (resp, "unavailable", None)
}

fn remember(state: &ServerState, id: &str, r: &StoredResult, now: f64) {
    let mut memory = state.memory.lock().unwrap_or_else(|e| e.into_inner());
    if memory.get(id).is_some_and(|m| m.updated == r.updated) {
        return;
    }
    let age = Duration::from_secs_f64((now - r.updated).clamp(0.0, 1e9));
    let generated_at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
    if memory.len() >= MEMORY_ENTRIES && !memory.contains_key(id) {
        let limit = Duration::from_secs_f64(state.settings.fresh + state.settings.max_stale);
        memory.retain(|_, m| m.generated_at.elapsed() <= limit);
        if memory.len() >= MEMORY_ENTRIES {
            memory.clear();
        }
    }
    memory.insert(
        id.to_string(),
        Remembered {
            updated: r.updated,
            generated_at,
            body: r.body.clone(),
        },
    );
}

/// The body of the remembered result of `id` if it is the one generated at `updated`.
fn remembered_body(state: &ServerState, id: &str, updated: f64) -> Option<Bytes> {
    let memory = state.memory.lock().unwrap_or_else(|e| e.into_inner());
    memory
        .get(id)
        .filter(|m| m.updated == updated)
        .map(|m| m.body.clone())
}

/// Redis is unreachable: answer from memory within the stale bound, else 503.
fn from_memory(
    state: &ServerState,
    id: &str,
    rel: &str,
    e: &StoreError,
) -> (Response, &'static str, Option<usize>) {
    let limit = state.settings.fresh + state.settings.max_stale;
    let memory = state.memory.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = memory.get(id) {
        let age = m.generated_at.elapsed().as_secs_f64();
        if age <= limit {
            return (
                list_response(m.body.clone(), age, "memory"),
                "success",
                None,
            );
        }
    }
    drop(memory);
    unavailable(rel, e)
}

/// `?debug=true`: the original's shape (§5.3), on the same key as normal requests.
async fn debug(state: &ServerState, id: &str) -> Response {
    let (lookup, job) = match tokio::join!(state.store.lookup(id), state.store.job_state(id)) {
        (Ok(l), Ok(j)) => (l, j),
        (Err(e), _) | (_, Err(e)) => {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": format!("redis unavailable: {}", e.reason), "requested_path": id}),
            );
        }
    };
    let job_status = match job {
        JobState::Idle => "idle",
        JobState::Queued => "queued",
        JobState::Processing => "processing",
    };
    if lookup.result.is_none() && lookup.error.is_none() {
        let body = match job {
            JobState::Processing => json!({
                "message": "Job is currently being processed by a worker. Please wait a moment and try again.",
                "requested_path": id,
                "status": "processing",
                "suggestion": "Wait a few seconds and retry with ?debug=true",
            }),
            JobState::Queued => json!({
                "message": "Job is queued and waiting for a worker. Please wait a moment and try again.",
                "requested_path": id,
                "status": "queued",
                "suggestion": "Wait a few seconds and retry with ?debug=true; if it stays queued, check that workers are running",
            }),
            JobState::Idle => json!({
                "debug_info": null,
                "message": "No error information available yet. Please trigger job processing first.",
                "requested_path": id,
                "status": "no_debug_info",
                "suggestion": "Try the request without ?debug=true first to trigger job processing, then retry with ?debug=true",
            }),
        };
        return json_response(StatusCode::OK, &body);
    }
    let mut info = serde_json::Map::new();
    if let Some(e) = &lookup.error {
        let mut details = e
            .details
            .as_deref()
            .and_then(|d| serde_json::from_str::<Value>(d).ok())
            .unwrap_or_else(|| json!({}));
        if let Some(obj) = details.as_object_mut() {
            obj.insert("timestamp_human".into(), json!(human_time(e.updated)));
        }
        info.insert("error_details".into(), details);
    }
    if let Some(r) = &lookup.result {
        let age = (lookup.now - r.updated).max(0.0);
        let results: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let fresh = age <= state.settings.fresh;
        info.insert(
            "normal_cache".into(),
            json!({
                "status": "success",
                "updated_timestamp": iso_time(r.updated),
                "results": results,
                "cache_age_seconds": format!("{age:.1}s ago"),
                "freshness": if fresh { "fresh" } else if age <= state.settings.fresh + state.settings.max_stale { "stale" } else { "expired" },
                "worker_id": r.worker_id,
                "processing_time": r.processing_time,
            }),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({"requested_path": id, "debug_info": info, "job_status": job_status}),
    )
}

/// `?reload=true`: delete, regenerate, wait (the original's 3.0.6 shapes, §5.4).
async fn reload(state: &ServerState, id: &str) -> Response {
    let started = Instant::now();
    let s = &state.settings;
    let elapsed = |started: Instant| format!("{:.2}s", started.elapsed().as_secs_f64());
    let fail = |e: StoreError| {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"error": format!("redis unavailable: {}", e.reason), "path": id, "status": "reload_unavailable"}),
        )
    };
    // Redis's clock before the delete: anything written after it is the new run.
    let t0 = match state.store.lookup(id).await {
        Ok(l) => l.now,
        Err(e) => return fail(e),
    };
    if let Err(e) = state.store.delete(id).await {
        return fail(e);
    }
    state
        .memory
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id);
    if let Err(e) = state.store.enqueue(id, s.fresh, 0.0, true).await {
        return fail(e);
    }
    match wait_for_new(state, id, t0, t0, s.reload_timeout, Some(s.reload_poll)).await {
        Ok(Some(New::Result(r, _))) => {
            let results: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            json_response(
                StatusCode::OK,
                &json!({"path": id, "processing_time": elapsed(started), "results": results, "status": "reload_complete"}),
            )
        }
        Ok(Some(New::Error(e))) => {
            let details = e
                .details
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
                .unwrap_or(Value::Null);
            let status =
                StatusCode::from_u16(e.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json_response(
                status,
                &json!({"error": details, "path": id, "processing_time": elapsed(started), "status": "reload_error"}),
            )
        }
        Ok(None) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({
                "message": "Please reload the page without ?reload=true later.",
                "path": id,
                "processing_time": elapsed(started),
                "status": "reload_timeout",
                "suggestion": "Try again later without ?reload=true",
                "timeout": format!("{:.2}s", s.reload_timeout.as_secs_f64()),
            }),
        ),
        Err(e) => fail(e),
    }
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC).
pub fn iso_time(ts: f64) -> String {
    let (date, time, micros) = civil(ts);
    format!("{date}T{time}.{micros:06}Z")
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn human_time(ts: f64) -> String {
    let (date, time, _) = civil(ts);
    format!("{date} {time}")
}

fn civil(ts: f64) -> (String, String, u64) {
    let total_micros = (ts.max(0.0) * 1e6).round() as u64;
    let secs = total_micros / 1_000_000;
    let micros = total_micros % 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
        micros,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_in_utc() {
        assert_eq!(iso_time(0.0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(human_time(1_795_000_000.0), "2026-11-18 11:06:40");
        assert_eq!(iso_time(951_782_400.25), "2000-02-29T00:00:00.250000Z");
    }

    #[test]
    fn prometheus_refresh_interval_bounds_the_wait() {
        let mut h = HeaderMap::new();
        assert_eq!(
            wait_budget(Duration::from_secs(5), &h),
            Duration::from_secs(5)
        );
        h.insert(
            "x-prometheus-refresh-interval-seconds",
            HeaderValue::from_static("2"),
        );
        assert_eq!(
            wait_budget(Duration::from_secs(5), &h),
            Duration::from_secs_f64(1.6)
        );
    }
}
