//! Splitting and checking a request for `P/targets[/...]`: the path rules `serve` and
//! `server-only` share (404 for other paths, 405 for other methods, 400 for unsafe
//! sub-paths).

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use crate::error::{PathError, json_response};
use crate::metrics::{self, Metrics};
use crate::tree::SubPath;

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
