//! `serve --exporters`'s routes: `P/metrics/<sub>` (the merged metrics of the
//! exporters at or below `<sub>`, negotiated as our own `/metrics`, with
//! `?debug=true` showing each exporter's outcome) and `P/exporters` (the HTTP SD
//! target list of every exporter).

use std::sync::Arc;
use std::time::SystemTime;

use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use exposition::Negotiated;
use serde_json::json;

use super::paths::not_found;
use crate::error::{PathError, json_response};
use crate::exporters::{Exporters, exporter_path, scrape_deadline, sd};
use crate::params::Query;
use crate::tree::SubPath;

/// The header in which Prometheus sends its scrape timeout.
const SCRAPE_TIMEOUT: &str = "x-prometheus-scrape-timeout-seconds";

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// `P/metrics/<raw_rest>`.
pub async fn metrics(exporters: &Exporters, raw_rest: &str, req: &Parts) -> Response {
    let sub = match SubPath::parse(raw_rest) {
        Ok(s) => s,
        Err(e) => {
            let err = PathError::BadRequest(e.to_string());
            return json_response(err.status(), &err.body(raw_rest));
        }
    };
    let query = Query::parse(req.uri.query());
    let headers = &req.headers;
    let deadline = scrape_deadline(
        headers.get(SCRAPE_TIMEOUT).and_then(|v| v.to_str().ok()),
        exporters.max_run_time(),
    );
    let scrape = match exporters.scrape(&sub, &query.params, deadline).await {
        Ok(s) => s,
        Err(err) => return json_response(err.status(), &err.body(&sub.as_rel())),
    };
    if query.debug {
        return debug(exporters, &sub, &scrape.outcomes());
    }
    let want = Negotiated::from_headers(
        header_str(headers, header::ACCEPT),
        header_str(headers, header::ACCEPT_ENCODING),
    );
    let text = scrape.body(&want.format);
    match want.body(text) {
        Ok(body) => super::negotiated_response(&want, body),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot gzip the metrics: {e}"),
        )
            .into_response(),
    }
}

/// `?debug=true`: each exporter's outcome, its series count and error, and its status.
fn debug(
    exporters: &Exporters,
    sub: &SubPath,
    outcomes: &[crate::exporters::merge::Outcome],
) -> Response {
    let now = SystemTime::now();
    let items: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| {
            let status = exporters.board().get(&o.file.rel).unwrap_or_default();
            json!({
                "exporter": exporter_path(&o.file.rel),
                "file": o.file.rel,
                "kind": o.file.kind,
                "up": o.result.is_ok(),
                "duration_seconds": o.duration.as_secs_f64(),
                "series": o.result.as_ref().ok().map(|r| r.series),
                "error": o.result.as_ref().err().map(|e| &e.message),
                "traceback": o.result.as_ref().err().and_then(|e| e.traceback.as_ref()),
                "last_run_seconds_ago": status.last_run.and_then(|t| now.duration_since(t).ok()).map(|d| d.as_secs_f64()),
                "last_error": status.last_error,
                "cache": status.cache.map(|c| c.as_str()),
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        &json!({"path": sub.as_rel(), "exporters": items}),
    )
}

/// `P/exporters`: the target list. The target is `advertise` or the request's Host.
pub async fn target_list(
    exporters: &Arc<Exporters>,
    prefix: &str,
    advertise: Option<&str>,
    req: &Parts,
) -> Response {
    let target = match advertise {
        Some(a) => a.to_string(),
        None => match req.headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({"error": "the request has no Host header; start httpsd with --advertise HOST:PORT"}),
                );
            }
        },
    };
    let dir = exporters.catalog().root().to_path_buf();
    let sets = match tokio::task::spawn_blocking(move || sd::read_params(&dir)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "exporter parameters are invalid");
            return json_response(StatusCode::INTERNAL_SERVER_ERROR, &json!({"error": e}));
        }
        Err(e) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": format!("internal error: {e}")}),
            );
        }
    };
    let list = sd::target_list(&exporters.catalog().snapshot(), prefix, &target, &sets);
    json_response(StatusCode::OK, &list)
}

/// Routes a request to the exporter routes when it is one of theirs.
pub async fn route(
    exporters: &Arc<Exporters>,
    prefix: &str,
    advertise: Option<&str>,
    req: &Parts,
) -> Option<Response> {
    let path = req.uri.path();
    let rest = path.strip_prefix(prefix)?;
    if rest == "/exporters" || rest == "/exporters/" {
        return Some(target_list(exporters, prefix, advertise, req).await);
    }
    let sub = rest.strip_prefix("/metrics/")?;
    if req.method != axum::http::Method::GET && req.method != axum::http::Method::HEAD {
        return Some(not_found(path));
    }
    Some(metrics(exporters, sub, req).await)
}
