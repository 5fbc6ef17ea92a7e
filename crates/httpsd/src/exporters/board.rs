//! What the admin page and `?debug=true` show about each exporter: its last run (when,
//! how long, how many series, success or the error) and its cache state.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::error::GeneratorError;
use crate::status::CacheState;

/// One exporter's last run.
#[derive(Debug, Clone, Default)]
pub struct ExporterStatus {
    /// When the last run ended.
    pub last_run: Option<SystemTime>,
    /// How long it took.
    pub duration: Option<Duration>,
    /// Whether it succeeded.
    pub up: bool,
    /// Series of the last good output.
    pub series: Option<usize>,
    /// The last error (kept until a run succeeds).
    pub last_error: Option<String>,
    /// The cache's state of its result.
    pub cache: Option<CacheState>,
}

/// Every exporter's status, by path under the exporters directory.
#[derive(Debug, Default)]
pub struct Board {
    entries: Mutex<HashMap<String, ExporterStatus>>,
}

impl Board {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, ExporterStatus>) -> R) -> R {
        // Every update is one assignment: a panic elsewhere leaves consistent data.
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut map)
    }

    /// Records a run: the series of its output, or its error.
    pub fn record(&self, rel: &str, result: Result<usize, &GeneratorError>, duration: Duration) {
        self.with(|m| {
            let s = m.entry(rel.to_string()).or_default();
            s.last_run = Some(SystemTime::now());
            s.duration = Some(duration);
            match result {
                Ok(series) => {
                    s.up = true;
                    s.series = Some(series);
                    s.last_error = None;
                }
                Err(e) => {
                    s.up = false;
                    s.last_error = Some(e.message.clone());
                }
            }
        });
    }

    /// Records a failure found while serving (a family defined twice, a deadline).
    pub fn record_error(&self, rel: &str, message: &str) {
        self.with(|m| {
            let s = m.entry(rel.to_string()).or_default();
            s.up = false;
            s.last_error = Some(message.to_string());
        });
    }

    /// Records the cache state of an exporter's result.
    pub fn set_cache_state(&self, rel: &str, state: CacheState) {
        self.with(|m| m.entry(rel.to_string()).or_default().cache = Some(state));
    }

    /// The status of `rel`.
    pub fn get(&self, rel: &str) -> Option<ExporterStatus> {
        self.with(|m| m.get(rel).cloned())
    }

    /// Forgets exporters for which `keep` is false (deleted files).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.with(|m| m.retain(|rel, _| keep(rel)));
    }
}
