//! The admin page at the prefix root: every target path with its generators, each
//! generator's last run (time, duration, targets, status, last error and traceback)
//! and cache state, plus version and uptime.
//!
//! Rendered server-side by an askama template (compile-time checked, HTML auto-escaped,
//! so hostile file names are shown as text). Every link is relative, so the page works
//! under a URL prefix and behind a reverse proxy. No JavaScript; `?refresh=N` adds a
//! meta refresh.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::catalog::{Catalog, Snapshot};
use crate::exporters::{Exporters, exporter_path};
use crate::status::{GeneratorStatus, RunStatus, StatusBoard};
use crate::tree::{Selection, SubPath, encode_path};

/// The admin page's data, filled into `templates/admin.html`.
#[derive(Template)]
#[template(path = "admin.html")]
pub struct AdminPage {
    /// httpsd version.
    pub version: &'static str,
    /// Human-readable uptime.
    pub uptime: String,
    /// Start time (RFC 3339).
    pub started: String,
    /// Render time (RFC 3339).
    pub now: String,
    /// Auto-refresh period in seconds, when asked for.
    pub refresh: Option<u32>,
    /// The URL prefix (display only).
    pub prefix: String,
    /// Relative link to the unprefixed `/metrics`.
    pub root_metrics_href: String,
    /// Number of generators in the tree.
    pub generator_count: usize,
    /// Failing generators, for the section at the top.
    pub failing: Vec<FailingView>,
    /// Every target path.
    pub dirs: Vec<DirView>,
    /// Every exporter (`--exporters DIR`; empty without it).
    pub exporters: Vec<ExporterView>,
}

/// One exporter row.
pub struct ExporterView {
    /// Its file under DIR.
    pub rel: String,
    /// Relative link to its metrics (`metrics/<path>`).
    pub href: String,
    /// Kind (prom, python, executable).
    pub kind: String,
    /// `up`, `down` or `unknown` (never run).
    pub status: String,
    /// Last run time and age.
    pub last_run: String,
    /// Duration of the last run.
    pub duration: String,
    /// Series of the last good output.
    pub series: String,
    /// Cache state.
    pub cache: String,
    /// The last error, until a run succeeds.
    pub error: Option<String>,
}

/// A failing generator in the summary at the top.
pub struct FailingView {
    /// Generator path relative to the root.
    pub rel: String,
    /// Since when it fails.
    pub failing_since: String,
    /// Error category.
    pub error_kind: String,
    /// Error message.
    pub error_message: String,
}

/// One target path.
pub struct DirView {
    /// Directory relative to the root (`""` for the root).
    pub rel: String,
    /// Relative link to its targets.
    pub href: String,
    /// Generators under it, recursively (what the path serves).
    pub total: usize,
    /// Generators directly in this directory.
    pub generators: Vec<GeneratorView>,
}

/// One generator row.
pub struct GeneratorView {
    /// File name.
    pub name: String,
    /// Kind (json, yaml, python, executable).
    pub kind: String,
    /// `success`, `fail` or `unknown` (never run).
    pub status: String,
    /// Since when it fails, if it does.
    pub failing_since_opt: Option<String>,
    /// Last run time and age.
    pub last_run: String,
    /// Parameters of the last run.
    pub params: String,
    /// Duration of the last run.
    pub duration: String,
    /// Target count of the last run.
    pub targets: String,
    /// Cache state.
    pub cache: String,
    /// The last error.
    pub error: Option<ErrorView>,
}

/// An error with its traceback.
pub struct ErrorView {
    /// When it happened.
    pub at: String,
    /// Category.
    pub kind: String,
    /// Message.
    pub message: String,
    /// Traceback, when there is one.
    pub traceback: Option<String>,
}

/// Renders the admin page of `catalog`'s tree (and of `exporters`, when served);
/// `raw_query` may ask for `?refresh=N`.
pub fn render(
    catalog: &Catalog,
    exporters: Option<&Exporters>,
    prefix: &str,
    raw_query: Option<&str>,
) -> Response {
    let refresh = raw_query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "refresh")
            .and_then(|(_, v)| v.parse::<u32>().ok())
            .map(|n| n.clamp(2, 3600))
    });
    let mut page = build_page(&catalog.snapshot(), catalog.status(), prefix, refresh);
    if let Some(e) = exporters {
        page.exporters = exporter_views(e, SystemTime::now());
    }
    match page.render() {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render the admin page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the admin page\n",
            )
                .into_response()
        }
    }
}

/// Builds the page's data from a snapshot of the tree and the status board.
pub fn build_page(
    snapshot: &Snapshot,
    board: &StatusBoard,
    prefix: &str,
    refresh: Option<u32>,
) -> AdminPage {
    let now = SystemTime::now();
    let statuses = board.all();
    let mut by_dir: HashMap<&str, Vec<GeneratorView>> = HashMap::new();
    let mut failing = Vec::new();
    for g in &snapshot.listing.generators {
        let (dir, name) = match g.rel.rsplit_once('/') {
            Some((d, n)) => (d, n),
            None => ("", g.rel.as_str()),
        };
        let st = statuses.get(&g.rel);
        if let Some(s) = st
            && let (Some(since), Some(last)) = (s.failing_since, &s.last)
            && let Some(e) = &last.error
        {
            failing.push(FailingView {
                rel: g.rel.clone(),
                failing_since: when(since, now),
                error_kind: kind_name(e),
                error_message: e.message.clone(),
            });
        }
        by_dir
            .entry(dir)
            .or_default()
            .push(generator_view(name, g.kind, st, now));
    }
    let dirs = snapshot
        .listing
        .dirs
        .iter()
        .map(|d| {
            let href = format!("targets/{}", encode_path(d));
            let total = match SubPath::parse(&encode_path(d)).map(|s| snapshot.listing.select(&s)) {
                Ok(Selection::Generators(g)) => g.len(),
                _ => 0,
            };
            DirView {
                rel: d.clone(),
                href,
                total,
                generators: by_dir.remove(d.as_str()).unwrap_or_default(),
            }
        })
        .collect();
    let depth = prefix.split('/').filter(|s| !s.is_empty()).count();
    AdminPage {
        version: env!("CARGO_PKG_VERSION"),
        uptime: humantime::format_duration(Duration::from_secs(board.uptime().as_secs()))
            .to_string(),
        started: humantime::format_rfc3339_seconds(board.started_at()).to_string(),
        now: humantime::format_rfc3339_seconds(now).to_string(),
        refresh,
        prefix: prefix.to_string(),
        root_metrics_href: format!("{}metrics", "../".repeat(depth)),
        generator_count: snapshot.listing.generators.len(),
        failing,
        dirs,
        exporters: Vec::new(),
    }
}

/// The exporters' rows, in path order, from their status board.
pub fn exporter_views(exporters: &Exporters, now: SystemTime) -> Vec<ExporterView> {
    let snapshot = exporters.catalog().snapshot();
    let board = exporters.board();
    (snapshot.listing.generators.iter())
        .map(|g| {
            let st = board.get(&g.rel).unwrap_or_default();
            let status = match (st.last_run, st.up) {
                (None, _) if st.last_error.is_none() => "unknown",
                (_, true) => "up",
                _ => "down",
            };
            ExporterView {
                rel: g.rel.clone(),
                href: format!("metrics/{}", encode_path(exporter_path(&g.rel))),
                kind: serde_json::to_value(g.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                status: status.to_string(),
                last_run: st.last_run.map_or_else(|| "never".into(), |t| when(t, now)),
                duration: st
                    .duration
                    .map_or_else(String::new, |d| format!("{:.3} s", d.as_secs_f64())),
                series: st.series.map_or_else(String::new, |n| n.to_string()),
                cache: st
                    .cache
                    .map_or_else(String::new, |c| c.as_str().to_string()),
                error: st.last_error,
            }
        })
        .collect()
}

fn kind_name(e: &crate::error::GeneratorError) -> String {
    serde_json::to_value(e.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", e.kind))
}

/// "2026-11-22T10:00:00Z (5s ago)".
fn when(t: SystemTime, now: SystemTime) -> String {
    let ago = now.duration_since(t).unwrap_or_default();
    format!(
        "{} ({} ago)",
        humantime::format_rfc3339_seconds(t),
        humantime::format_duration(Duration::from_secs(ago.as_secs()))
    )
}

fn generator_view(
    name: &str,
    kind: crate::tree::GeneratorKind,
    st: Option<&GeneratorStatus>,
    now: SystemTime,
) -> GeneratorView {
    let kind = serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let last = st.and_then(|s| s.last.as_ref());
    let status = match last.map(|l| l.status) {
        Some(RunStatus::Success) => "success",
        Some(RunStatus::Fail) => "fail",
        None => "unknown",
    };
    let error = st
        .and_then(|s| s.last_error.as_ref())
        .map(|(at, e)| ErrorView {
            at: when(*at, now),
            kind: kind_name(e),
            message: e.message.clone(),
            traceback: e.traceback.clone(),
        });
    GeneratorView {
        name: name.to_string(),
        kind,
        status: status.to_string(),
        failing_since_opt: st.and_then(|s| s.failing_since).map(|t| when(t, now)),
        last_run: last.map_or_else(|| "not run yet".to_string(), |l| when(l.at, now)),
        params: last.map(|l| l.params.clone()).unwrap_or_default(),
        duration: last
            .and_then(|l| l.duration)
            .map_or_else(|| "-".to_string(), |d| format!("{:.3} s", d.as_secs_f64())),
        targets: last
            .and_then(|l| l.target_count)
            .map_or_else(|| "-".to_string(), |n| n.to_string()),
        cache: st.and_then(|s| s.cache.as_ref()).map_or_else(
            || "-".to_string(),
            |c| format!("{} since {}", c.state.as_str(), when(c.since, now)),
        ),
        error,
    }
}
