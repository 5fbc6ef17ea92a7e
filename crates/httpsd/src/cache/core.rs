//! The cache: single-flight runs per key, freshness, stale-while-revalidate, failure
//! memory, caller timeouts, proactive refresh and bounded size. Generic over what it
//! runs ([`Source`]), so it knows time and concurrency only and is tested with tokio's
//! paused clock.
//!
//! Why not `moka`: its loader coalescing ends when the loading future is dropped or
//! completes for its callers, but we need a run that outlives a caller's timeout and
//! fills the cache for the next caller, serving the old value while a refresh runs,
//! remembering failures separately from the last good value, and a proactive refresh
//! pass driven by "recently requested". Those are the whole job; a map behind one
//! mutex (held for microseconds, never across an await) with a batch LRU eviction at
//! the cap is simpler than bending moka's semantics.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use super::policy::Policy;
use crate::metrics::Metrics;
use crate::status::CacheState;
use prometheus_client::metrics::counter::Counter;

/// The identity of a run as the cache sees it: what names it in metrics and logs, and
/// the errors the cache itself makes for its runs. Every source of one key type shares
/// them (generators and exporters both use `RunKey`).
pub trait CacheKey: Hash + Eq + Clone + Send + Sync + 'static {
    /// The failure type of its runs.
    type Error;
    /// The `generator` label of the key, for metrics and logs.
    fn label(&self) -> &str;
    /// The error a caller gets when it stops waiting after `waited`.
    fn timeout_error(&self, waited: Duration) -> Self::Error;
    /// The error recorded when a run is abandoned after `limit`.
    fn abandoned_error(&self, limit: Duration) -> Self::Error;
    /// The error a caller gets when a run vanished without a result (a panic).
    fn lost_error(&self) -> Self::Error;
}

/// What the cache runs, and the hooks it calls.
pub trait Source: Send + Sync + 'static {
    /// Identity of a run (generator version and canonical parameters).
    type Key: CacheKey<Error = Self::Error>;
    /// A successful result (cheap to clone: an `Arc`).
    type Value: Clone + Send + Sync + 'static;
    /// A failure (cloned to every caller that shares it; its `Display` is the one-line
    /// description the logs give).
    type Error: Clone + Send + Sync + std::fmt::Display + 'static;

    /// Starts a run. The future is spawned, so it outlives the callers that wait for it.
    fn run(&self, key: &Self::Key) -> BoxFuture<'static, Result<Self::Value, Self::Error>>;
    /// Called (under the cache lock: spawn, do not block) when a fresh result is stored.
    fn stored(&self, _key: &Self::Key, _value: &Self::Value, _at: SystemTime) {}
    /// Called (under the cache lock: do not block) when an entry changes state, with the
    /// wall-clock time its served result was produced (for the admin page and debug).
    fn state_changed(
        &self,
        _key: &Self::Key,
        _state: CacheState,
        _produced_at: Option<SystemTime>,
    ) {
    }
    /// Called (under the cache lock: spawn, do not block) when an entry is evicted.
    fn evicted(&self, _key: &Self::Key) {}
}

/// How a lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Served {
    /// A result younger than `cache_time`.
    Fresh,
    /// A result past `cache_time` but within the stale bound; a refresh is under way or due.
    Stale,
    /// The caller waited for a run (first request, or nothing servable).
    Ran,
    /// A failure remembered for `cache_exception_time`.
    CachedFailure,
    /// The caller stopped waiting at the timeout; the run goes on.
    Timeout,
}

/// The answer to a lookup.
#[derive(Debug, Clone)]
pub struct Lookup<V, E> {
    /// The result.
    pub result: Result<V, E>,
    /// How it was obtained.
    pub served: Served,
    /// Age of the result (or of the remembered failure), when it came from the cache.
    pub age: Option<Duration>,
}

/// State of an entry, for the admin page and the debug view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// No result yet.
    Empty,
    /// The result is younger than `cache_time`.
    Fresh,
    /// The result is past `cache_time` but still served.
    Stale,
    /// The result is too old to be served.
    Expired,
}

/// A read-only view of one entry.
#[derive(Debug, Clone)]
pub struct EntryView<K, E> {
    /// The key.
    pub key: K,
    /// Freshness of the last good result.
    pub state: EntryState,
    /// Age of the last good result.
    pub age: Option<Duration>,
    /// A run is under way.
    pub refreshing: bool,
    /// How long runs have been failing (since the first failure after the last success).
    pub failing_for: Option<Duration>,
    /// The last failure, while failing.
    pub last_error: Option<E>,
    /// Time since the last request (None: loaded from disk, never requested).
    pub since_request: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Request,
    Stale,
    Proactive,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Request => "request",
            Trigger::Stale => "stale",
            Trigger::Proactive => "proactive",
        }
    }
}

type Outcome<S> = Result<<S as Source>::Value, <S as Source>::Error>;

struct Flight<S: Source> {
    id: u64,
    started: Instant,
    rx: watch::Receiver<Option<Outcome<S>>>,
}

struct Entry<S: Source> {
    good: Option<(S::Value, Instant)>,
    failure: Option<(S::Error, Instant)>,
    failing_since: Option<Instant>,
    flight: Option<Flight<S>>,
    requested: Option<Instant>,
    created: Instant,
    /// Duration of the last completed run, so a proactive refresh can start early enough.
    last_run: Duration,
    /// This entry's lookup counters, resolved once so a hit allocates nothing.
    counters: Option<Box<LookupCounters>>,
}

/// `httpsd_cache_lookups_total` children of one generator.
struct LookupCounters {
    hit: Counter,
    stale: Counter,
    miss: Counter,
    cached_failure: Counter,
}

impl LookupCounters {
    fn new(m: &crate::metrics::CacheMetrics, generator: &str) -> LookupCounters {
        let c = |result: &str| {
            m.lookups
                .get_or_create(&crate::metrics::GeneratorResultLabels {
                    generator: generator.to_string(),
                    result: result.to_string(),
                })
                .clone()
        };
        // Create this generator's other series at zero too, so that rates and alerts
        // work from the first sample on (and the families are listed on /metrics).
        let _ = m.timeouts.get_or_create(&crate::metrics::GeneratorLabel {
            generator: generator.to_string(),
        });
        for trigger in ["stale", "proactive"] {
            for status in ["success", "fail"] {
                let _ = m.refreshes.get_or_create(&crate::metrics::RefreshLabels {
                    generator: generator.to_string(),
                    trigger: trigger.to_string(),
                    status: status.to_string(),
                });
            }
        }
        LookupCounters {
            hit: c("hit"),
            stale: c("stale"),
            miss: c("miss"),
            cached_failure: c("cached_failure"),
        }
    }
}

impl<S: Source> Entry<S> {
    fn new(now: Instant) -> Entry<S> {
        Entry {
            good: None,
            failure: None,
            failing_since: None,
            flight: None,
            requested: None,
            created: now,
            last_run: Duration::ZERO,
            counters: None,
        }
    }

    fn count(&self, which: impl Fn(&LookupCounters) -> &Counter) {
        if let Some(c) = &self.counters {
            which(c).inc();
        }
    }

    fn touched(&self) -> Instant {
        self.requested.unwrap_or(self.created)
    }

    /// True when a failure happened too recently to start another background refresh.
    fn throttled(&self, policy: &Policy, now: Instant) -> bool {
        self.failure
            .as_ref()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) < policy.retry_after())
    }
}

/// The wall-clock time of `at` (an instant in the past).
fn wall(at: Instant) -> SystemTime {
    let ago = Instant::now().saturating_duration_since(at);
    SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

struct Inner<S: Source> {
    source: S,
    policy: Policy,
    metrics: Arc<Metrics>,
    gc_name: String,
    map: Mutex<HashMap<S::Key, Entry<S>>>,
    refresh_slots: Arc<Semaphore>,
    next_id: AtomicU64,
}

/// A cache of `S`'s runs. Cloning shares it.
pub struct Cache<S: Source> {
    inner: Arc<Inner<S>>,
}

impl<S: Source> Clone for Cache<S> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Source> Cache<S> {
    /// A new, empty cache. `gc_name` is the `name` label of the 1.x GC metrics.
    pub fn new(source: S, policy: Policy, metrics: Arc<Metrics>, gc_name: &str) -> Cache<S> {
        let slots = policy.refresh_concurrency.max(1);
        for reason in ["idle", "capacity"] {
            let _ = metrics
                .cache
                .evictions
                .get_or_create(&crate::metrics::ReasonLabel {
                    reason: reason.to_string(),
                });
        }
        let name = crate::metrics::NameLabel {
            name: gc_name.to_string(),
        };
        let _ = metrics.cache.gc_collected.get_or_create(&name);
        let _ = metrics.cache.gc_cache_count.get_or_create(&name);
        Cache {
            inner: Arc::new(Inner {
                source,
                policy,
                metrics,
                gc_name: gc_name.to_string(),
                map: Mutex::new(HashMap::new()),
                refresh_slots: Arc::new(Semaphore::new(slots)),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.inner.source
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<S::Key, Entry<S>>> {
        // A panic while holding the lock leaves the map consistent (every update is a
        // single assignment), so keep serving.
        self.inner.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The result for `key`: cached when fresh or stale-but-servable, otherwise from a
    /// run (shared with every concurrent caller) awaited up to the policy's timeout.
    pub async fn get(&self, key: &S::Key) -> Lookup<S::Value, S::Error> {
        let p = &self.inner.policy;
        let m = &self.inner.metrics.cache;
        let now = Instant::now();
        let mut rx = {
            let mut map = self.lock();
            if !map.contains_key(key) {
                self.make_room(&mut map);
                map.insert(key.clone(), Entry::new(now));
                self.set_size(map.len());
            }
            let entry = map.get_mut(key).expect("present: inserted above");
            entry.requested = Some(now);
            if entry.counters.is_none() {
                let label = key.label();
                entry.counters = Some(Box::new(LookupCounters::new(m, label)));
            }
            if p.enabled {
                if let Some((value, at)) = &entry.good {
                    let age = now.saturating_duration_since(*at);
                    if age < p.cache_time {
                        entry.count(|c| &c.hit);
                        return Lookup {
                            result: Ok(value.clone()),
                            served: Served::Fresh,
                            age: Some(age),
                        };
                    }
                    if age < p.max_age {
                        let value = value.clone();
                        if entry.flight.is_none() && !entry.throttled(p, now) {
                            self.start(key, entry, Trigger::Stale);
                        }
                        entry.count(|c| &c.stale);
                        return Lookup {
                            result: Ok(value),
                            served: Served::Stale,
                            age: Some(age),
                        };
                    }
                }
                if let Some((error, at)) = &entry.failure {
                    let age = now.saturating_duration_since(*at);
                    if age < p.cache_exception_time {
                        entry.count(|c| &c.cached_failure);
                        return Lookup {
                            result: Err(error.clone()),
                            served: Served::CachedFailure,
                            age: Some(age),
                        };
                    }
                }
            }
            entry.count(|c| &c.miss);
            match &entry.flight {
                Some(f) => f.rx.clone(),
                None => self.start(key, entry, Trigger::Request),
            }
        };
        let wait = async {
            match rx.wait_for(Option::is_some).await {
                Ok(r) => r.clone(),
                Err(_) => None,
            }
        };
        let outcome = match p.timeout {
            Some(t) => match tokio::time::timeout(t, wait).await {
                Ok(o) => o,
                Err(_) => {
                    let label = key.label();
                    m.timeouts
                        .get_or_create(&crate::metrics::GeneratorLabel {
                            generator: label.to_string(),
                        })
                        .inc();
                    tracing::warn!(generator = %label, waited_seconds = t.as_secs_f64(), "generator run exceeded the caller timeout; it goes on and its result will serve later requests");
                    return Lookup {
                        result: Err(key.timeout_error(t)),
                        served: Served::Timeout,
                        age: None,
                    };
                }
            },
            None => wait.await,
        };
        Lookup {
            result: outcome.unwrap_or_else(|| Err(key.lost_error())),
            served: Served::Ran,
            age: None,
        }
    }

    /// Starts a run for `key` and records it as the entry's flight.
    fn start(
        &self,
        key: &S::Key,
        entry: &mut Entry<S>,
        trigger: Trigger,
    ) -> watch::Receiver<Option<Outcome<S>>> {
        let (tx, rx) = watch::channel(None);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        if trigger != Trigger::Request && self.inner.policy.enabled {
            let produced = entry.good.as_ref().map(|(_, at)| wall(*at));
            self.inner
                .source
                .state_changed(key, CacheState::Refreshing, produced);
        }
        entry.flight = Some(Flight {
            id,
            started: Instant::now(),
            rx: rx.clone(),
        });
        let inner = self.inner.clone();
        let key = key.clone();
        let cache = self.clone();
        tokio::spawn(async move {
            // Background refreshes share `--update-threads` slots; a caller's run does not
            // queue behind them.
            let _permit = match trigger {
                Trigger::Request => None,
                _ => inner.refresh_slots.clone().acquire_owned().await.ok(),
            };
            let label = key.label().to_string();
            let gauge = inner
                .metrics
                .cache
                .in_flight
                .get_or_create(&crate::metrics::GeneratorLabel {
                    generator: label.clone(),
                })
                .clone();
            gauge.inc();
            let run = inner.source.run(&key);
            let limit = inner.policy.hard_limit;
            let outcome = match tokio::time::timeout(limit, run).await {
                Ok(o) => o,
                Err(_) => {
                    tracing::error!(generator = %label, limit_seconds = limit.as_secs_f64(), "generator run abandoned after the hard limit");
                    Err(key.abandoned_error(limit))
                }
            };
            gauge.dec();
            cache.complete(&key, id, trigger, &outcome);
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    /// Records the outcome of flight `id` of `key`.
    fn complete(&self, key: &S::Key, id: u64, trigger: Trigger, outcome: &Outcome<S>) {
        let p = &self.inner.policy;
        let source = &self.inner.source;
        let label = key.label();
        let now = Instant::now();
        if trigger != Trigger::Request {
            let status = if outcome.is_ok() { "success" } else { "fail" };
            self.inner
                .metrics
                .cache
                .refresh(label, trigger.label(), status);
        }
        let mut map = self.lock();
        let Some(entry) = map.get_mut(key) else {
            return;
        };
        if let Some(f) = entry.flight.take_if(|f| f.id == id) {
            entry.last_run = now.saturating_duration_since(f.started);
        }
        if !p.enabled {
            // Single-flight only: nothing is kept once the run is shared.
            if entry.flight.is_none() {
                map.remove(key);
                self.set_size(map.len());
            }
            return;
        }
        match outcome {
            Ok(value) => {
                if let Some(since) = entry.failing_since.take() {
                    tracing::info!(generator = %label, failed_for_seconds = now.saturating_duration_since(since).as_secs_f64(), "generator recovered");
                }
                entry.good = Some((value.clone(), now));
                entry.failure = None;
                let wall_now = SystemTime::now();
                source.stored(key, value, wall_now);
                source.state_changed(key, CacheState::Fresh, Some(wall_now));
            }
            Err(e) => {
                let since = *entry.failing_since.get_or_insert(now);
                match &entry.good {
                    Some((_, at)) if now.saturating_duration_since(*at) < p.max_age => {
                        let age = now.saturating_duration_since(*at);
                        tracing::warn!(
                            generator = %label,
                            error = %e,
                            serving_age_seconds = age.as_secs_f64(),
                            served_until_age_seconds = p.max_age.as_secs_f64(),
                            failing_for_seconds = now.saturating_duration_since(since).as_secs_f64(),
                            "refresh failed; serving the last good result"
                        );
                    }
                    Some(_) => {
                        tracing::error!(generator = %label, error = %e, "refresh failed and the last good result is older than the stale bound; requests fail");
                    }
                    None => {}
                }
                entry.failure = Some((e.clone(), now));
                let produced = entry.good.as_ref().map(|(_, at)| wall(*at));
                source.state_changed(key, CacheState::Failing, produced);
            }
        }
    }

    /// Evicts the least recently requested idle entries when the cap is reached.
    fn make_room(&self, map: &mut HashMap<S::Key, Entry<S>>) {
        let cap = self.inner.policy.max_entries.max(1);
        if map.len() < cap {
            return;
        }
        // Evict a tenth at once so that a flood of new keys sorts only once per batch.
        let want = (map.len() + 1 - cap).max(cap / 10).max(1);
        let mut idle: Vec<(Instant, S::Key)> = map
            .iter()
            .filter(|(_, e)| e.flight.is_none())
            .map(|(k, e)| (e.touched(), k.clone()))
            .collect();
        idle.sort_unstable_by_key(|(t, _)| *t);
        let mut evicted = 0u64;
        for (_, k) in idle.into_iter().take(want) {
            map.remove(&k);
            self.inner.source.evicted(&k);
            evicted += 1;
        }
        self.count_evictions("capacity", evicted);
        self.set_size(map.len());
    }

    fn count_evictions(&self, reason: &str, n: u64) {
        if n == 0 {
            return;
        }
        let m = &self.inner.metrics.cache;
        m.evictions
            .get_or_create(&crate::metrics::ReasonLabel {
                reason: reason.to_string(),
            })
            .inc_by(n);
        m.gc_collected
            .get_or_create(&crate::metrics::NameLabel {
                name: self.inner.gc_name.clone(),
            })
            .inc_by(n);
    }

    fn set_size(&self, n: usize) {
        let m = &self.inner.metrics.cache;
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        m.entries.set(n);
        m.gc_cache_count
            .get_or_create(&crate::metrics::NameLabel {
                name: self.inner.gc_name.clone(),
            })
            .set(n);
    }
}

mod maintenance;

#[cfg(test)]
mod tests;
