//! `serve`'s `P/targets[/...]`: the engine's merged list, status codes and metrics,
//! and the `?debug=true` report.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::paths::{parse_subpath, targets_subpath};
use crate::engine::PathRun;
use crate::error::{PathError, json_response};
use crate::metrics;
use crate::params::Query;

/// Everything that is not a fixed route: `P/targets[/...]`, or 404.
pub(super) async fn fallback_handler(
    State(state): State<Arc<AppState>>,
    mut req: Request,
) -> Response {
    if let Some(exporters) = &state.exporters {
        // The parts only: a body is not `Sync`, so a borrowed request cannot cross an await.
        let (parts, body) = req.into_parts();
        let advertise = state.advertise.as_deref();
        if let Some(resp) =
            super::exporters::route(exporters, &state.prefix, advertise, &parts).await
        {
            return resp;
        }
        req = Request::from_parts(parts, body);
    }
    let rest = match targets_subpath(&state.prefix, &req) {
        Ok(rest) => rest,
        Err(resp) => return *resp,
    };
    let query = Query::parse(req.uri().query());
    targets(&state, rest, query).await
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
