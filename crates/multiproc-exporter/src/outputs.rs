//! What the periodic outputs besides `/metrics` (the textfile for node_exporter, the
//! Pushgateway) share: the [`Render`] callback through which they get a scrape (so they
//! know nothing of the server), their format, their wait, and [`OutputStats`], what they
//! did, served as `multiproc_exporter_textfile_*` and `multiproc_exporter_push*`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use exposition::{Escaping, Format, MetricFamily, MetricType, Sample};
use tokio::sync::watch;

/// Renders one scrape in a format (the server's `AppState::render`).
pub type Render = Arc<
    dyn Fn(Format) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> + Send + Sync,
>;

/// The text format both outputs write (what node_exporter and the Pushgateway read).
pub const OUTPUT_FORMAT: Format = Format::Text(Escaping::Underscores);

/// Successes and failures of one output.
#[derive(Debug, Default)]
pub struct OutputCounts {
    /// Runs that succeeded.
    pub ok: AtomicU64,
    /// Runs that failed (after their retries).
    pub failed: AtomicU64,
    /// Unix time of the last success, in milliseconds (0: never).
    pub last_success_ms: AtomicU64,
}

impl OutputCounts {
    /// Records one run's outcome.
    pub fn record(&self, ok: bool) {
        if ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO);
            self.last_success_ms
                .store(now.as_millis() as u64, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `multiproc_exporter_{runs}_total{result}` and
    /// `multiproc_exporter_{what}_last_success_timestamp_seconds`.
    fn families(&self, runs: &str, what: &str, help: &str, out: &mut Vec<MetricFamily>) {
        let mut runs_fam = MetricFamily::new(
            format!("multiproc_exporter_{runs}"),
            format!("{help}, by result."),
            MetricType::Counter,
        );
        for (result, v) in [("ok", &self.ok), ("failed", &self.failed)] {
            runs_fam.samples.push(Sample::new(
                format!("multiproc_exporter_{runs}_total"),
                &[("result", result)],
                v.load(Ordering::Relaxed) as f64,
            ));
        }
        out.push(runs_fam);
        let name = format!("multiproc_exporter_{what}_last_success_timestamp_seconds");
        let mut last = MetricFamily::new(
            name.clone(),
            format!("Unix time of the last success of the {what} output (0: none yet)."),
            MetricType::Gauge,
        );
        last.samples.push(Sample::new(
            name,
            &[],
            self.last_success_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        ));
        out.push(last);
    }
}

/// What the outputs did, served with the own metrics.
#[derive(Debug, Default)]
pub struct OutputStats {
    /// Whether a textfile is written (its metrics are served only then).
    pub textfile_on: std::sync::atomic::AtomicBool,
    /// Whether metrics are pushed.
    pub push_on: std::sync::atomic::AtomicBool,
    /// Textfile writes.
    pub textfile: OutputCounts,
    /// Pushes (a push that succeeded after a retry counts once, as ok).
    pub push: OutputCounts,
}

impl OutputStats {
    /// The `multiproc_exporter_textfile_*` and `_push_*` families of the outputs in use.
    pub fn families(&self) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        if self.textfile_on.load(Ordering::Relaxed) {
            self.textfile
                .families("textfile_writes", "textfile", "Textfile writes", &mut out);
        }
        if self.push_on.load(Ordering::Relaxed) {
            self.push
                .families("pushes", "push", "Pushes to the Pushgateway", &mut out);
        }
        out
    }
}

/// Waits `interval` or until stop is asked; `true` when stop was asked.
pub async fn wait_or_stop(interval: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(interval) => *stop.borrow(),
        r = stop.changed() => r.is_err() || *stop.borrow(),
    }
}
