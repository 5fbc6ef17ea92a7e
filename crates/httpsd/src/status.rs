//! The status board: for each generator, what happened the last time it ran (or, for
//! a static file, was loaded): when, how long, how many targets, the status, the last
//! error with its traceback, since when it is failing, and the cache state.
//!
//! The admin page, the `?debug=true` view and the Sentry reporter read it; the engine
//! (dynamic runs), the catalog (static loads) and the cache (cache state) write it.
//! It is a plain map behind a mutex: writes are one per generator run, reads one per
//! admin or debug request, so contention is not a concern.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::error::GeneratorError;
use crate::params::Params;
use crate::validate::GeneratorOutput;

/// Outcome of a run or load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// The output was valid.
    Success,
    /// The run failed or its output was refused.
    Fail,
}

/// The state of a generator's cached result, as the cache sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheState {
    /// The cached result is within its time to live.
    Fresh,
    /// The cached result is past its time to live and is still served.
    Stale,
    /// A background refresh is running.
    Refreshing,
    /// The last refreshes failed (the last good result may still be served).
    Failing,
}

impl CacheState {
    /// The lowercase name shown to operators.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheState::Fresh => "fresh",
            CacheState::Stale => "stale",
            CacheState::Refreshing => "refreshing",
            CacheState::Failing => "failing",
        }
    }
}

/// What the cache reports about one generator's cached result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheInfo {
    /// The current state.
    pub state: CacheState,
    /// When it entered this state.
    pub since: SystemTime,
    /// When the cached (served) result was produced, if there is one.
    pub produced_at: Option<SystemTime>,
}

/// One run (or load) of a generator.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// When it finished.
    pub at: SystemTime,
    /// How long it took (`None` for static loads, which are not timed).
    pub duration: Option<Duration>,
    /// The parameters it was given (query string form, empty for none).
    pub params: String,
    /// Success or failure.
    pub status: RunStatus,
    /// Number of targets on success.
    pub target_count: Option<usize>,
    /// Number of groups on success.
    pub group_count: Option<usize>,
    /// The error on failure.
    pub error: Option<GeneratorError>,
}

/// Everything the board knows about one generator.
#[derive(Debug, Clone, Default)]
pub struct GeneratorStatus {
    /// The most recent run or load.
    pub last: Option<RunRecord>,
    /// The most recent error (kept after a later success, for context).
    pub last_error: Option<(SystemTime, GeneratorError)>,
    /// When the last success happened.
    pub last_success: Option<SystemTime>,
    /// Since when every run has failed (`None` while it succeeds).
    pub failing_since: Option<SystemTime>,
    /// Number of runs recorded.
    pub runs: u64,
    /// Number of failed runs recorded.
    pub failures: u64,
    /// The cache's view, when a cache feeds the board.
    pub cache: Option<CacheInfo>,
    /// The message last reported to Sentry for the current failure streak.
    reported: Option<String>,
}

/// Per-generator last run status, shared by every component of one server.
#[derive(Debug)]
pub struct StatusBoard {
    started: Instant,
    started_at: SystemTime,
    entries: Mutex<HashMap<String, GeneratorStatus>>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard::new()
    }
}

impl StatusBoard {
    /// An empty board; its creation time is the server's start for uptime.
    pub fn new() -> StatusBoard {
        StatusBoard {
            started: Instant::now(),
            started_at: SystemTime::now(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Time since the board (the server) started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Wall-clock start time.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, GeneratorStatus>) -> R) -> R {
        // A panic elsewhere while holding the lock leaves consistent data: keep going.
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut map)
    }

    /// Records a dynamic generator run.
    pub fn record_run(
        &self,
        generator: &str,
        params: &Params,
        result: &Result<Arc<GeneratorOutput>, GeneratorError>,
        duration: Duration,
    ) {
        self.record(generator, params.to_string(), result, Some(duration));
    }

    /// Records a static file (re)load.
    pub fn record_static(
        &self,
        generator: &str,
        result: &Result<Arc<GeneratorOutput>, GeneratorError>,
    ) {
        self.record(generator, String::new(), result, None);
    }

    fn record(
        &self,
        generator: &str,
        params: String,
        result: &Result<Arc<GeneratorOutput>, GeneratorError>,
        duration: Option<Duration>,
    ) {
        let now = SystemTime::now();
        let record = match result {
            Ok(out) => RunRecord {
                at: now,
                duration,
                params,
                status: RunStatus::Success,
                target_count: Some(out.target_count),
                group_count: Some(out.group_count),
                error: None,
            },
            Err(e) => RunRecord {
                at: now,
                duration,
                params,
                status: RunStatus::Fail,
                target_count: None,
                group_count: None,
                error: Some(e.clone()),
            },
        };
        self.with(|map| {
            let entry = map.entry(generator.to_string()).or_default();
            entry.runs += 1;
            match &record.error {
                None => {
                    entry.last_success = Some(now);
                    entry.failing_since = None;
                    entry.reported = None;
                }
                Some(e) => {
                    entry.failures += 1;
                    entry.failing_since.get_or_insert(now);
                    entry.last_error = Some((now, e.clone()));
                }
            }
            entry.last = Some(record);
        });
    }

    /// Sets the cache's view of a generator (called by the cache on every transition).
    pub fn set_cache_state(
        &self,
        generator: &str,
        state: CacheState,
        produced_at: Option<SystemTime>,
    ) {
        self.with(|map| {
            let entry = map.entry(generator.to_string()).or_default();
            let since = match &entry.cache {
                Some(c) if c.state == state => c.since,
                _ => SystemTime::now(),
            };
            entry.cache = Some(CacheInfo {
                state,
                since,
                produced_at,
            });
        });
    }

    /// The status of one generator.
    pub fn get(&self, generator: &str) -> Option<GeneratorStatus> {
        self.with(|map| map.get(generator).cloned())
    }

    /// A copy of every entry.
    pub fn all(&self) -> HashMap<String, GeneratorStatus> {
        self.with(|map| map.clone())
    }

    /// Forgets generators that are no longer in the tree.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.with(|map| map.retain(|k, _| keep(k)));
    }

    /// True once per failure streak and message: whether this failure should be
    /// reported (to Sentry), so that a failing generator polled every 15 s sends one
    /// event, not one per poll.
    pub fn claim_report(&self, generator: &str, message: &str) -> bool {
        self.with(|map| {
            let entry = map.entry(generator.to_string()).or_default();
            if entry.reported.as_deref() == Some(message) {
                false
            } else {
                entry.reported = Some(message.to_string());
                true
            }
        })
    }
}

/// Seconds since the Unix epoch, for JSON.
pub fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl GeneratorStatus {
    /// The board entry as JSON, for `?debug=true`.
    pub fn to_json(&self, now: SystemTime) -> serde_json::Value {
        let age = |t: SystemTime| now.duration_since(t).map_or(0.0, |d| d.as_secs_f64());
        let last = self.last.as_ref().map(|r| {
            serde_json::json!({
                "at": epoch_seconds(r.at),
                "at_rfc3339": humantime::format_rfc3339_seconds(r.at).to_string(),
                "age_seconds": age(r.at),
                "run_seconds": r.duration.map(|d| d.as_secs_f64()),
                "params": r.params,
                "status": r.status,
                "target_count": r.target_count,
                "error": r.error,
            })
        });
        serde_json::json!({
            "last_run": last,
            "last_success_at": self.last_success.map(epoch_seconds),
            "failing_since": self.failing_since.map(epoch_seconds),
            "last_error": self.last_error.as_ref().map(|(t, e)| serde_json::json!({
                "at": epoch_seconds(*t),
                "error": e,
            })),
            "runs": self.runs,
            "failures": self.failures,
            "cache": self.cache.as_ref().map(|c| serde_json::json!({
                "state": c.state,
                "since": epoch_seconds(c.since),
                "age_seconds": c.produced_at.map(age),
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn failing_since_is_kept_across_failures_and_cleared_on_success() {
        let board = StatusBoard::new();
        let err = Err(GeneratorError::new(ErrorKind::Exception, "boom"));
        board.record_run("a.py", &Params::empty(), &err, Duration::from_millis(5));
        let since = board.get("a.py").unwrap().failing_since.unwrap();
        board.record_run("a.py", &Params::empty(), &err, Duration::from_millis(5));
        let s = board.get("a.py").unwrap();
        assert_eq!(s.failing_since, Some(since));
        assert_eq!((s.runs, s.failures), (2, 2));
        assert!(board.claim_report("a.py", "boom"));
        assert!(!board.claim_report("a.py", "boom"));
        assert!(board.claim_report("a.py", "other"));
        let ok = Ok(Arc::new(GeneratorOutput {
            groups_json: Vec::new(),
            group_count: 0,
            target_count: 0,
        }));
        board.record_run("a.py", &Params::empty(), &ok, Duration::from_millis(5));
        let s = board.get("a.py").unwrap();
        assert!(s.failing_since.is_none());
        assert!(s.last_error.is_some());
        assert!(board.claim_report("a.py", "boom"));
    }

    #[test]
    fn cache_state_since_changes_only_on_transition() {
        let board = StatusBoard::new();
        board.set_cache_state("a.py", CacheState::Fresh, None);
        let first = board.get("a.py").unwrap().cache.unwrap().since;
        std::thread::sleep(Duration::from_millis(5));
        board.set_cache_state("a.py", CacheState::Fresh, None);
        assert_eq!(board.get("a.py").unwrap().cache.unwrap().since, first);
        board.set_cache_state("a.py", CacheState::Stale, None);
        assert_ne!(board.get("a.py").unwrap().cache.unwrap().since, first);
    }
}
