//! The HTTP sidecar: `/metrics` (the merged directory plus our own metrics, gzip when
//! asked), `/healthz`, the periodic archiver, graceful shutdown. CPU work (scan, merge,
//! encode, gzip, archive) runs on blocking threads, never on the async workers.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::archive::{ArchiveOptions, Archiver};
use crate::background::Outputs;
use crate::collector::Collector;
use crate::expose::{self, Format};
use crate::extras::Extras;
use crate::merge::{MergedFamily, MergedSample};
use crate::scan::ScanStats;
use exposition::Negotiated;

/// One own-metric sample: name suffix, labels, value.
type OwnSample<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);

/// Validated settings of the sidecar.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The multiprocess directory.
    pub dir: PathBuf,
    /// Reader threads (0 = one per core, at most 4).
    pub threads: usize,
    /// Archiver settings; `None` = never touch the directory.
    pub archive: Option<ArchiveOptions>,
    /// Time between archive passes.
    pub archive_interval: Duration,
    /// Connection limit and timeouts of the HTTP listener.
    pub connections: listener::ConnectionLimits,
    /// Time between scans that stat every file although no inotify event named it
    /// (zero: no watch, every scan stats every file).
    pub full_check_interval: Duration,
}

/// Counters behind the `multiproc_exporter_*` metrics.
#[derive(Debug, Default)]
pub struct SelfMetrics {
    /// Size of the last body: the next body's buffer is allocated once at about this size.
    last_body_len: AtomicU64,
    scrapes: AtomicU64,
    scrape_errors: AtomicU64,
    files_parsed: AtomicU64,
    files_refreshed: AtomicU64,
    files_skipped: AtomicU64,
    bytes_read: AtomicU64,
    corrupt_seen: AtomicU64,
    vanished_seen: AtomicU64,
    archive_runs: AtomicU64,
    archive_refusals: AtomicU64,
    archive_errors: AtomicU64,
    archived_files: AtomicU64,
    deleted_files: AtomicU64,
    last: Mutex<LastScrape>,
}

#[derive(Debug, Default, Clone)]
struct LastScrape {
    stats: ScanStats,
    duration: f64,
}

/// Shared application state.
#[derive(Debug)]
pub struct AppState {
    settings: Settings,
    collector: Mutex<Collector>,
    metrics: SelfMetrics,
    /// What is served besides the directory (collectors, process metrics).
    extras: Arc<Extras>,
}

impl AppState {
    /// Builds the state (no I/O).
    pub fn new(settings: Settings) -> Arc<AppState> {
        AppState::with_extras(settings, Arc::new(Extras::default()))
    }

    /// Builds the state with what is served besides the directory (no I/O).
    pub fn with_extras(settings: Settings, extras: Arc<Extras>) -> Arc<AppState> {
        let mut collector = Collector::new(settings.dir.clone(), settings.threads);
        collector.set_full_check_interval(settings.full_check_interval);
        Arc::new(AppState {
            collector: Mutex::new(collector),
            settings,
            metrics: SelfMetrics::default(),
            extras,
        })
    }

    /// One scrape with the extras: gathers them (collectors run in their Python workers,
    /// bounded by their timeout), then merges and encodes on a blocking thread.
    pub async fn render(self: &Arc<Self>, format: Format) -> Result<String, String> {
        let gathered = self.extras.gather().await;
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            state.scrape_with(&format, None, |merged| {
                gathered.finish(merged, &state.extras)
            })
        })
        .await
        .map_err(|e| format!("scrape task failed: {e}"))?
    }

    /// One scrape: collect, append our own metrics, encode.
    pub fn scrape(&self, format: &Format) -> Result<String, String> {
        self.scrape_with(format, None, |_| Vec::new())
    }

    /// [`AppState::scrape`], with the families `extra` returns (given the merged ones, so
    /// that it can leave out clashing names) served after ours, keeping only the families
    /// or samples named in `names` (`?name[]=...`) when given.
    pub fn scrape_with(
        &self,
        format: &Format,
        names: Option<&BTreeSet<String>>,
        extra: impl FnOnce(&[MergedFamily]) -> Vec<exposition::MetricFamily>,
    ) -> Result<String, String> {
        let t0 = Instant::now();
        let collected = {
            let mut c = self.collector.lock().unwrap_or_else(|p| p.into_inner());
            c.collect()
        };
        let m = &self.metrics;
        m.scrapes.fetch_add(1, Ordering::Relaxed);
        let collected = match collected {
            Ok(c) => c,
            Err(e) => {
                m.scrape_errors.fetch_add(1, Ordering::Relaxed);
                return Err(e.to_string());
            }
        };
        let s = &collected.scan;
        m.files_parsed.fetch_add(s.parsed as u64, Ordering::Relaxed);
        m.files_refreshed
            .fetch_add(s.refreshed as u64, Ordering::Relaxed);
        m.files_skipped
            .fetch_add(s.skipped as u64, Ordering::Relaxed);
        m.bytes_read.fetch_add(s.bytes_read, Ordering::Relaxed);
        m.corrupt_seen
            .fetch_add(s.corrupt as u64, Ordering::Relaxed);
        m.vanished_seen
            .fetch_add(s.vanished as u64, Ordering::Relaxed);
        for p in &s.problems {
            tracing::warn!(dir = %self.settings.dir.display(), "skipped: {p}");
        }
        for f in &collected.merge.mode_conflicts {
            tracing::warn!(family = %f, "gauge files disagree on the multiprocess mode; the last file (sorted by name) decides");
        }
        if collected.merge.bad_le > 0 {
            tracing::warn!(
                count = collected.merge.bad_le,
                "histogram samples with a non-numeric le label skipped"
            );
        }
        let duration = t0.elapsed().as_secs_f64();
        {
            let mut last = m.last.lock().unwrap_or_else(|p| p.into_inner());
            last.stats = collected.scan.clone();
            last.duration = duration;
        }
        let own = self.own_families();
        let extra = extra(&collected.families);
        let last_len = m.last_body_len.load(Ordering::Relaxed) as usize;
        // 1/32 slack for growing values; OpenMetrics bodies are a little longer.
        let capacity = (last_len + last_len / 32).max(1 << 16);
        let all = collected.families.iter().chain(own.iter());
        let (mut body, extra) = match names {
            Some(names) => {
                let kept: Vec<MergedFamily> = all.filter_map(|f| f.restricted(names)).collect();
                let extra = extra
                    .into_iter()
                    .filter_map(|f| restricted(f, names))
                    .collect();
                (expose::encode(&kept, format), extra)
            }
            None => (expose::encode_sized(all, format, capacity), extra),
        };
        if !extra.is_empty() {
            crate::extras::append_encoded(&mut body, &extra, format);
        }
        m.last_body_len.store(body.len() as u64, Ordering::Relaxed);
        Ok(body)
    }

    /// One archive pass, under the collector lock so that no scrape sees a half-done pass.
    pub fn archive_pass(&self, archiver: &mut Archiver) {
        // Held for the whole pass: the scanner then never sees staged-but-unpublished data.
        let _guard = self.collector.lock().unwrap_or_else(|p| p.into_inner());
        let m = &self.metrics;
        m.archive_runs.fetch_add(1, Ordering::Relaxed);
        match archiver.pass() {
            Ok(r) => {
                if let Some(why) = &r.refused {
                    m.archive_refusals.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("archiver refused to act: {why}");
                }
                m.archived_files
                    .fetch_add(r.archived_files as u64, Ordering::Relaxed);
                m.deleted_files
                    .fetch_add(r.deleted_files as u64, Ordering::Relaxed);
                if r.archived_files + r.deleted_files > 0 {
                    tracing::info!(
                        pids = r.pids,
                        archived = r.archived_files,
                        deleted = r.deleted_files,
                        recovered = r.recovered,
                        "archive pass"
                    );
                }
            }
            Err(e) => {
                m.archive_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("archive pass failed: {e}");
            }
        }
    }

    fn own_families(&self) -> Vec<MergedFamily> {
        let m = &self.metrics;
        let last = m.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let c = |v: &AtomicU64| v.load(Ordering::Relaxed) as f64;
        let mut out = Vec::new();
        let mut fam = |name: &str, typ: &str, help: &str, samples: Vec<OwnSample>| {
            let sample_name = |s: &str| -> Arc<str> {
                if typ == "counter" {
                    format!("multiproc_exporter_{name}{s}_total").into()
                } else {
                    format!("multiproc_exporter_{name}{s}").into()
                }
            };
            out.push(MergedFamily {
                name: format!("multiproc_exporter_{name}").into(),
                help: help.into(),
                typ: typ.into(),
                samples: samples
                    .into_iter()
                    .map(|(suffix, labels, value)| MergedSample {
                        name: sample_name(suffix),
                        labels: labels
                            .into_iter()
                            .map(|(k, v)| (Arc::from(k), Arc::from(v)))
                            .collect(),
                        value,
                        timestamp: None,
                    })
                    .collect(),
            });
        };
        fam(
            "scrapes",
            "counter",
            "Scrapes served.",
            vec![("", vec![], c(&m.scrapes))],
        );
        fam(
            "scrape_errors",
            "counter",
            "Scrapes that failed (directory unreadable).",
            vec![("", vec![], c(&m.scrape_errors))],
        );
        fam(
            "scrape_duration_seconds",
            "gauge",
            "Duration of the last scan+merge of the directory.",
            vec![("", vec![], last.duration)],
        );
        fam(
            "file_reads",
            "counter",
            "Files read, by kind: parsed (new), refreshed (values re-read), skipped (dead writer, unchanged).",
            vec![
                ("", vec![("kind", "parsed")], c(&m.files_parsed)),
                ("", vec![("kind", "refreshed")], c(&m.files_refreshed)),
                ("", vec![("kind", "skipped")], c(&m.files_skipped)),
            ],
        );
        fam(
            "read_bytes",
            "counter",
            "Bytes read from .db files.",
            vec![("", vec![], c(&m.bytes_read))],
        );
        fam(
            "files",
            "gauge",
            "Files merged in the last scrape.",
            vec![("", vec![], last.stats.files as f64)],
        );
        fam(
            "entries",
            "gauge",
            "Entries merged in the last scrape.",
            vec![("", vec![], last.stats.entries as f64)],
        );
        fam(
            "corrupt_files",
            "gauge",
            "Corrupt or truncated files skipped in the last scrape.",
            vec![("", vec![], last.stats.corrupt as f64)],
        );
        fam(
            "foreign_files",
            "gauge",
            "*.db names that are not prometheus_client files, ignored in the last scrape.",
            vec![("", vec![], last.stats.foreign as f64)],
        );
        fam(
            "vanished_files",
            "counter",
            "Files that vanished between listing and reading.",
            vec![("", vec![], c(&m.vanished_seen))],
        );
        fam(
            "namespace_visible",
            "gauge",
            "1 when the writers' PID namespace is visible (dead processes can be recognised).",
            vec![(
                "",
                vec![],
                if last.stats.namespace_visible {
                    1.0
                } else {
                    0.0
                },
            )],
        );
        fam(
            "archive_runs",
            "counter",
            "Archive passes run.",
            vec![("", vec![], c(&m.archive_runs))],
        );
        fam(
            "archive_refusals",
            "counter",
            "Archive passes that refused to act (writers' PID namespace not visible).",
            vec![("", vec![], c(&m.archive_refusals))],
        );
        fam(
            "archive_errors",
            "counter",
            "Archive passes that failed.",
            vec![("", vec![], c(&m.archive_errors))],
        );
        fam(
            "archived_files",
            "counter",
            "Files of dead processes folded into archive files.",
            vec![("", vec![], c(&m.archived_files))],
        );
        fam(
            "deleted_files",
            "counter",
            "live* gauge files (and, when asked, all-mode gauge files) of dead processes deleted.",
            vec![("", vec![], c(&m.deleted_files))],
        );
        out
    }
}

/// The router (testable without a socket).
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn metrics(
    State(state): State<Arc<AppState>>,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    // `?name[]=a&name[]=b`, like Python's exposition handler.
    let names: BTreeSet<String> = params
        .into_iter()
        .filter(|(k, v)| k == "name[]" && !v.is_empty())
        .map(|(_, v)| v)
        .collect();
    let names = (!names.is_empty()).then_some(names);
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("")
    };
    let negotiated =
        Negotiated::from_headers(header(header::ACCEPT), header(header::ACCEPT_ENCODING));
    let gathered = state.extras.gather().await;
    let res = tokio::task::spawn_blocking(move || {
        let body = state.scrape_with(&negotiated.format, names.as_ref(), |merged| {
            gathered.finish(merged, &state.extras)
        })?;
        negotiated
            .body(body)
            .map(|b| (b, negotiated))
            .map_err(|e| e.to_string())
    })
    .await;
    match res {
        Ok(Ok((body, negotiated))) => {
            let mut resp = (StatusCode::OK, body).into_response();
            if let Ok(v) = HeaderValue::from_str(&negotiated.content_type) {
                resp.headers_mut().insert(header::CONTENT_TYPE, v);
            }
            if negotiated.gzip {
                resp.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            resp
        }
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("scrape failed: {e}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("scrape task failed: {e}\n"),
        )
            .into_response(),
    }
}

/// A collector's family restricted to `names` as [`MergedFamily::restricted`] restricts
/// ours: whole when its name or exposed name is asked for, else the named samples.
fn restricted(
    mut family: exposition::MetricFamily,
    names: &BTreeSet<String>,
) -> Option<exposition::MetricFamily> {
    let exposed = match family.typ {
        exposition::MetricType::Counter => format!("{}_total", family.name),
        exposition::MetricType::Info => format!("{}_info", family.name),
        _ => family.name.clone(),
    };
    if names.contains(&family.name) || names.contains(&exposed) {
        return Some(family);
    }
    family.samples.retain(|s| names.contains(&s.name));
    (!family.samples.is_empty()).then_some(family)
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match std::fs::read_dir(&state.settings.dir) {
        Ok(_) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read {}: {e}\n", state.settings.dir.display()),
        )
            .into_response(),
    }
}

/// Serves on an already bound listener until `shutdown` resolves; runs the archiver
/// (when configured) on a blocking thread meanwhile.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    run_with(
        listener,
        settings,
        Arc::new(Extras::default()),
        Outputs::default(),
        shutdown,
    )
    .await
}

/// [`run`] with extras (collectors, process metrics) and outputs (textfile, Pushgateway),
/// which get a last run after the server stopped.
pub async fn run_with(
    listener: TcpListener,
    settings: Settings,
    extras: Arc<Extras>,
    outputs: Outputs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = AppState::with_extras(settings.clone(), extras.clone());
    let render_state = state.clone();
    let render: crate::outputs::Render = Arc::new(move |format| {
        let state = render_state.clone();
        Box::pin(async move { state.render(format).await })
    });
    let (outputs_stop, outputs_tasks) = outputs.start(render, extras.output_stats());
    // Finish an interrupted archive pass before the first scrape can see its leftovers.
    let archiver = match settings.archive.clone() {
        Some(opts) => {
            let mut a = Archiver::new(settings.dir.clone(), opts);
            let a = tokio::task::spawn_blocking(move || {
                if let Err(e) = a.recover() {
                    tracing::error!("archive recovery failed: {e}");
                }
                a
            })
            .await
            .map_err(std::io::Error::other)?;
            Some(a)
        }
        None => None,
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let archiver_thread = archiver.map(|mut archiver| {
        let state = state.clone();
        let stop = stop.clone();
        let interval = settings.archive_interval;
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                state.archive_pass(&mut archiver);
                let until = Instant::now() + interval;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    });
    let res = listener::run(listener, app(state), settings.connections.clone(), shutdown).await;
    stop.store(true, Ordering::Relaxed);
    // Outputs write or push once more with the final values, then end.
    let _ = outputs_stop.send(true);
    for t in outputs_tasks {
        let _ = t.await;
    }
    extras.shutdown();
    if let Some(t) = archiver_thread {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    res
}
