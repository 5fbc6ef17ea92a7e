//! The HTTP routes: `serve`'s API under the URL prefix (targets, admin page), the one
//! `/metrics` handler of every command, and the operator layers (authentication,
//! request log) every listener wears. It knows HTTP only; what a path contains is the
//! engine's business, what the admin page shows is `admin`'s.
//!
//! - [`targets`]: `serve`'s `P/targets[/...]` and its `?debug=true` report.
//! - [`exporters`]: `P/metrics/<sub>` and `P/exporters` (`serve --exporters`).
//! - [`paths`]: splitting and checking a targets path, shared with `server-only`.

pub mod exporters;
pub mod paths;
pub mod targets;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::engine::Engine;
use exposition::Negotiated;

use crate::metrics::Metrics;

/// Shared state of the HTTP handlers.
pub struct AppState {
    /// The discovery engine.
    pub engine: Arc<Engine>,
    /// Our own metrics.
    pub metrics: Arc<Metrics>,
    /// The normalised URL prefix (`""` or `/something`, no trailing slash).
    pub prefix: String,
    /// The exporters (`--exporters DIR`), if any.
    pub exporters: Option<Arc<crate::exporters::Exporters>>,
    /// `--advertise HOST:PORT`: the target of `P/exporters` (default: the Host header).
    pub advertise: Option<String>,
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
    let mut router = with_metrics_routes(Router::new(), &p, state.metrics.clone());
    if p.is_empty() {
        router = router.route("/", get(admin_handler));
    } else {
        let with_slash = format!("{p}/");
        router = router.route(&with_slash, get(admin_handler)).route(
            &p,
            get(move || async move { Redirect::permanent(&with_slash) }),
        );
    }
    router.fallback(targets::fallback_handler).with_state(state)
}

/// The admin page at the prefix root (rendered by [`crate::admin`]).
async fn admin_handler(State(state): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Response {
    crate::admin::render(
        state.engine.catalog(),
        state.exporters.as_deref(),
        &state.prefix,
        q.as_deref(),
    )
}

/// Adds `/metrics` (and `P/metrics` under a prefix) to `router`: the one metrics
/// route of `serve`, `server-only` and `worker-only`.
pub fn with_metrics_routes<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    prefix: &str,
    metrics: Arc<Metrics>,
) -> Router<S> {
    let route = get(metrics_handler).with_state(metrics);
    let router = router.route("/metrics", route.clone());
    if prefix.is_empty() {
        router
    } else {
        router.route(&format!("{prefix}/metrics"), route)
    }
}

/// A metrics body as negotiated: its Content-Type, `Content-Encoding: gzip` when it
/// is gzipped, and `Vary` (shared by `/metrics` and the exporters' `P/metrics/<sub>`).
pub fn negotiated_response(want: &Negotiated, body: Vec<u8>) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&want.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if want.gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    response
}

/// `/metrics`: our own metrics, encoded in this one place, in the format the scraper
/// asks for (text 0.0.4 unless its `Accept` asks for OpenMetrics, as Python's and Go's
/// clients negotiate), gzipped when accepted.
async fn metrics_handler(State(metrics): State<Arc<Metrics>>, headers: HeaderMap) -> Response {
    let value_of = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let want =
        Negotiated::from_headers(value_of(header::ACCEPT), value_of(header::ACCEPT_ENCODING));
    let body = match metrics.render(&want.format) {
        Ok(text) => want
            .body(text)
            .map_err(|e| format!("cannot gzip the metrics: {e}")),
        Err(e) => Err(format!("cannot re-encode our own metrics: {e}")),
    };
    match body {
        Ok(body) => negotiated_response(&want, body),
        Err(e) => {
            tracing::error!(error = %e, "/metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, e).into_response()
        }
    }
}
