//! The cache's rules and defaults: the [`Policy`] the cache enforces, the validated
//! [`CacheSettings`] (policy plus where results persist), and every default value,
//! defined once here. The command line that fills them is in `cli::cache`.

use std::path::PathBuf;
use std::time::Duration;

/// Default `cache_time`: a result is reused for 60 s, like 1.x.
pub const DEFAULT_CACHE_TIME: Duration = Duration::from_secs(60);
/// Default `timeout`: a caller waits up to 60 s for a run, like 1.x.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default `--max-stale`: a result is served up to 1 h past its `cache_time`.
pub const DEFAULT_MAX_STALE_SECS: f64 = 3600.0;
/// Default `--cache-refresh-interval`: one proactive refresh pass every 10 s.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Default `--update-threads`: at most 8 background refreshes run at once.
pub const DEFAULT_UPDATE_THREADS: usize = 8;
/// Default `--cache-max-entries`: the hard cap on cached (generator, parameters) entries.
pub const DEFAULT_MAX_ENTRIES: usize = 4096;
/// Default `garbage_collection_interval` (1.x): idle entries are swept every 5 s.
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(5);
/// Default `garbage_collection_count` (1.x CLI): idle entries are swept only above 100.
pub const DEFAULT_GC_COUNT: usize = 100;
/// Default `name` (1.x CLI): the `name` label of the garbage-collection metrics.
pub const DEFAULT_NAME: &str = "target_generator";
/// A run still going after this long (or the caller timeout, if longer) is abandoned
/// by the cache. The runners' own limits normally kill a hung generator much sooner;
/// this only guarantees that a key can never stay blocked for ever.
pub const MIN_HARD_LIMIT: Duration = Duration::from_secs(600);

/// The time and concurrency rules of a cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Keep results at all (`--cache-type None` sets false: single-flight only).
    pub enabled: bool,
    /// A successful result is fresh for this long (`cache_time`).
    pub cache_time: Duration,
    /// A failure is remembered for this long when there is no servable result.
    pub cache_exception_time: Duration,
    /// How long a caller waits for a run (`None`: until it ends).
    pub timeout: Option<Duration>,
    /// Nothing older than this is served (`cache_time` + `--max-stale`, or `-m`).
    pub max_age: Duration,
    /// Period of the proactive refresh pass.
    pub refresh_interval: Duration,
    /// Background refreshes running at once.
    pub refresh_concurrency: usize,
    /// Hard cap on entries.
    pub max_entries: usize,
    /// Period of the idle-entry sweep.
    pub gc_interval: Duration,
    /// Idle entries are swept only when there are more entries than this.
    pub gc_count: usize,
    /// A run still going after this long is abandoned (recorded as a timeout failure).
    pub hard_limit: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        let cache_time = DEFAULT_CACHE_TIME;
        Policy {
            enabled: true,
            cache_time,
            cache_exception_time: Duration::ZERO,
            timeout: Some(DEFAULT_TIMEOUT),
            max_age: cache_time + Duration::from_secs_f64(DEFAULT_MAX_STALE_SECS),
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            refresh_concurrency: DEFAULT_UPDATE_THREADS,
            max_entries: DEFAULT_MAX_ENTRIES,
            gc_interval: DEFAULT_GC_INTERVAL,
            gc_count: DEFAULT_GC_COUNT,
            hard_limit: MIN_HARD_LIMIT,
        }
    }
}

impl Policy {
    /// Single-flight only, callers wait until the run ends.
    pub fn uncached() -> Policy {
        Policy {
            enabled: false,
            timeout: None,
            hard_limit: Duration::from_secs(86400),
            ..Policy::default()
        }
    }

    /// Entries requested within this window are refreshed proactively.
    pub(super) fn recent_window(&self) -> Duration {
        (self.cache_time * 2).max(self.refresh_interval * 2)
    }

    /// The period of the refresh pass (`refresh_interval`, at least 50 ms).
    pub fn refresh_period(&self) -> Duration {
        self.refresh_interval.max(Duration::from_millis(50))
    }

    /// Entries not requested for this long are evicted by the sweep.
    pub(super) fn idle_for(&self) -> Duration {
        self.max_age
            .max(self.cache_time)
            .max(self.cache_exception_time)
    }

    /// A failed background refresh is retried no sooner than this.
    pub(super) fn retry_after(&self) -> Duration {
        self.cache_exception_time
            .max(self.cache_time.min(Duration::from_secs(5)))
    }
}

/// Validated cache settings: the policy the cache enforces plus where it persists.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    /// Time and concurrency rules.
    pub policy: Policy,
    /// Where last good results are persisted (only when caching is enabled).
    pub cache_dir: Option<PathBuf>,
    /// The `name` label of the 1.x garbage-collection metrics.
    pub name: String,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            policy: Policy::default(),
            cache_dir: None,
            name: DEFAULT_NAME.to_string(),
        }
    }
}

impl CacheSettings {
    /// No caching and no caller timeout: one run at a time per key, nothing kept.
    /// For `check` and workers, which want every run fresh.
    pub fn uncached() -> CacheSettings {
        CacheSettings {
            policy: Policy::uncached(),
            cache_dir: None,
            name: DEFAULT_NAME.to_string(),
        }
    }

    /// Makes sure the cache never abandons a run the runners would still let finish:
    /// its hard limit is at least `max_run_time` plus a margin for the kill.
    pub fn with_max_run_time(mut self, max_run_time: Duration) -> CacheSettings {
        let floor = max_run_time.saturating_add(Duration::from_secs(30));
        self.policy.hard_limit = self.policy.hard_limit.max(floor);
        self
    }
}
