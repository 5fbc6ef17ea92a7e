//! The HTTP API of `serve`: routes under the URL prefix, status codes and bodies.
//! It knows HTTP only; what a path contains is the engine's business.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::json;

use crate::engine::{Engine, PathRun};
use crate::error::{PathError, json_response};
use crate::metrics::{self, Metrics};
use crate::params::Query;
use crate::tree::SubPath;

/// Shared state of the HTTP handlers.
pub struct AppState {
    /// The discovery engine.
    pub engine: Arc<Engine>,
    /// Our own metrics.
    pub metrics: Arc<Metrics>,
    /// The normalised URL prefix (`""` or `/something`, no trailing slash).
    pub prefix: String,
}

/// Adds the operator layers around `router`: authentication (inner) and request
/// logs (outer, so that refused requests are logged too).
pub fn with_ops_layers(router: Router, policy: Arc<crate::security::AccessPolicy>) -> Router {
    // Without authentication the layer would only pass requests on: leave it out.
    let router = if policy.enabled() {
        router.layer(axum::middleware::from_fn_with_state(
            policy,
            crate::security::require_auth,
        ))
    } else {
        router
    };
    router.layer(axum::middleware::from_fn(request_log))
}

/// Logs one line per request (target `httpsd::access`): method, path, status, duration.
/// The query string is left out: it may hold parameters operators consider private.
async fn request_log(req: Request, next: axum::middleware::Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    tracing::info!(
        target: "httpsd::access",
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        // Microsecond precision: `0.067`, not `0.06662900000000001`.
        duration_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        "request"
    );
    resp
}

/// Builds the router for `serve`.
pub fn app(state: Arc<AppState>) -> Router {
    let p = state.prefix.clone();
    let mut router = Router::new().route("/metrics", get(metrics_handler));
    let admin_handler = crate::admin::admin_handler;
    if p.is_empty() {
        router = router.route("/", get(admin_handler));
    } else {
        let with_slash = format!("{p}/");
        router = router
            .route(&format!("{p}/metrics"), get(metrics_handler))
            .route(&with_slash, get(admin_handler))
            .route(
                &p,
                get(move || async move { Redirect::permanent(&with_slash) }),
            );
    }
    router.fallback(fallback_handler).with_state(state)
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

/// Everything that is not a fixed route: `P/targets[/...]`, or 404.
async fn fallback_handler(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let rest = match targets_subpath(&state.prefix, &req) {
        Ok(rest) => rest,
        Err(resp) => return *resp,
    };
    let query = Query::parse(req.uri().query());
    targets(&state, rest, query).await
}

/// Splits a request for `P/targets[/...]` into its raw (still percent-encoded)
/// sub-path; anything else is answered here: 404 for other paths, 405 for methods
/// other than GET and HEAD. Shared by `serve` and `server-only`.
pub fn targets_subpath<'a>(prefix: &str, req: &'a Request) -> Result<&'a str, Box<Response>> {
    let raw_path = req.uri().path();
    let rest = raw_path
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix("/targets"))
        .ok_or_else(|| Box::new(not_found(raw_path)))?;
    let rest = match rest.strip_prefix('/') {
        Some(r) => r,
        None if rest.is_empty() => "",
        None => return Err(Box::new(not_found(raw_path))),
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method not allowed; use GET"}),
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Err(Box::new(resp));
    }
    Ok(rest)
}

/// A 404 with a JSON body naming the path.
pub fn not_found(path: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": "not found", "path": path}),
    )
}

/// Parses a request's raw sub-path safely; an unsafe one is counted and answered 400.
/// Shared by `serve` and `server-only`.
pub fn parse_subpath(
    metrics: &Metrics,
    raw_rest: &str,
    started: Instant,
) -> Result<SubPath, Box<Response>> {
    SubPath::parse(raw_rest).map_err(|e| {
        let err = PathError::BadRequest(e.to_string());
        metrics.observe_path_request(
            metrics::UNKNOWN_PATH,
            "bad_request",
            started.elapsed(),
            None,
        );
        Box::new(json_response(err.status(), &err.body(raw_rest)))
    })
}

async fn targets(state: &AppState, raw_rest: &str, query: Query) -> Response {
    let started = Instant::now();
    let sub = match parse_subpath(&state.metrics, raw_rest, started) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let rel = sub.as_rel();
    if query.debug {
        let run = state.engine.run_path(&sub, &query.params).await;
        return debug_response(&rel, &run, state.engine.catalog().status());
    }
    match state.engine.path_body(&sub, &rel, &query.params).await {
        Ok(body) => {
            state.metrics.observe_path_request(
                &rel,
                "success",
                started.elapsed(),
                Some(body.target_count),
            );
            (
                [(header::CONTENT_TYPE, "application/json")],
                Body::from(body.bytes),
            )
                .into_response()
        }
        Err(err) => {
            let (label, status) = match &err {
                PathError::NotFound(_) => (metrics::UNKNOWN_PATH, "not_found"),
                PathError::BadRequest(_) => (metrics::UNKNOWN_PATH, "bad_request"),
                _ => (rel.as_str(), "fail"),
            };
            state
                .metrics
                .observe_path_request(label, status, started.elapsed(), None);
            if matches!(err, PathError::Generators(_) | PathError::Unreadable { .. }) {
                tracing::warn!(path = %rel, error = %err, "target path failed");
            }
            if let PathError::Generators(failed) = &err {
                crate::sentry_report::generator_failures(
                    state.engine.catalog().status(),
                    &rel,
                    &query.params,
                    failed,
                );
            }
            json_response(err.status(), &err.body(&rel))
        }
    }
}

/// `?debug=true`: per-generator timings, errors and status-board history (last runs,
/// failing since, cache state and age), answered 200 even when the path fails; only
/// a path that does not exist or is malformed keeps its 404/400.
fn debug_response(
    rel: &str,
    run: &Result<PathRun, PathError>,
    board: &crate::status::StatusBoard,
) -> Response {
    let run = match run {
        Ok(r) => r,
        Err(e @ PathError::Unreadable { .. }) => {
            let mut body = e.body(rel);
            body["status"] = json!("fail");
            return json_response(StatusCode::OK, &body);
        }
        Err(e) => return json_response(e.status(), &e.body(rel)),
    };
    let now = std::time::SystemTime::now();
    let mut seconds = serde_json::Map::new();
    let mut generators = Vec::new();
    for o in &run.outcomes {
        seconds.insert(o.generator.rel.clone(), json!(o.duration.as_secs_f64()));
        let mut g = json!({
            "generator": o.generator.rel,
            "kind": o.generator.kind,
            "source": o.source,
            "run_seconds": o.duration.as_secs_f64(),
        });
        match &o.result {
            Ok(out) => {
                g["status"] = json!("success");
                g["target_count"] = json!(out.target_count);
                g["group_count"] = json!(out.group_count);
            }
            Err(e) => {
                g["status"] = json!("fail");
                g["error"] = json!(e);
            }
        }
        if let Some(cache) = &o.cache {
            g["cache"] = json!(cache);
        }
        if let Some(st) = board.get(&o.generator.rel) {
            g["board"] = st.to_json(now);
        }
        generators.push(g);
    }
    let ok = run.outcomes.iter().all(|o| o.result.is_ok());
    json_response(
        StatusCode::OK,
        &json!({
            "path": rel,
            "status": if ok { "success" } else { "fail" },
            "generator_run_seconds": seconds,
            "generators": generators,
        }),
    )
}
