//! Unit tests of the cache core.

use super::*;
use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;

/// A scripted source: each run sleeps `delay` and then returns the next scripted
/// outcome (or the run number when the script is empty).
struct Script {
    runs: Arc<AtomicUsize>,
    delay: Duration,
    outcomes: Arc<Mutex<VecDeque<Result<usize, String>>>>,
    stored: Arc<AtomicUsize>,
    evicted: Arc<AtomicUsize>,
}

impl Script {
    fn new(delay_ms: u64) -> Script {
        Script {
            runs: Arc::default(),
            delay: Duration::from_millis(delay_ms),
            outcomes: Arc::default(),
            stored: Arc::default(),
            evicted: Arc::default(),
        }
    }
}

impl CacheKey for String {
    type Error = String;
    fn label(&self) -> &str {
        self
    }
    fn timeout_error(&self, waited: Duration) -> String {
        format!("timeout after {waited:?}")
    }
    fn abandoned_error(&self, _: Duration) -> String {
        "abandoned".into()
    }
    fn lost_error(&self) -> String {
        "lost".into()
    }
}

impl Source for Script {
    type Key = String;
    type Value = usize;
    type Error = String;

    fn run(&self, _key: &String) -> BoxFuture<'static, Result<usize, String>> {
        let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        let next = self.outcomes.lock().unwrap().pop_front();
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            next.unwrap_or(Ok(n))
        })
    }
    fn stored(&self, _: &String, _: &usize, _: SystemTime) {
        self.stored.fetch_add(1, Ordering::SeqCst);
    }
    fn evicted(&self, _: &String) {
        self.evicted.fetch_add(1, Ordering::SeqCst);
    }
}

fn policy() -> Policy {
    Policy {
        cache_time: Duration::from_secs(10),
        max_age: Duration::from_secs(100),
        timeout: Some(Duration::from_secs(5)),
        hard_limit: Duration::from_secs(60),
        refresh_interval: Duration::from_secs(2),
        ..Policy::default()
    }
}

fn cache(script: Script, policy: Policy) -> (Cache<Script>, Arc<AtomicUsize>) {
    let runs = script.runs.clone();
    (
        Cache::new(script, policy, Arc::new(Metrics::new()), "t"),
        runs,
    )
}

fn runs(r: &AtomicUsize) -> usize {
    r.load(Ordering::SeqCst)
}

async fn settle() {
    // Let spawned runs that are due finish (the paused clock auto-advances).
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_run() {
    let (c, r) = cache(Script::new(500), policy());
    let k = "k".to_string();
    let all = futures::future::join_all((0..50).map(|_| c.get(&k))).await;
    assert_eq!(runs(&r), 1);
    for l in &all {
        assert_eq!(l.result, Ok(1));
        assert_eq!(l.served, Served::Ran);
    }
    // A second round within cache_time runs nothing.
    tokio::time::advance(Duration::from_secs(5)).await;
    let k = "k".to_string();
    let all = futures::future::join_all((0..50).map(|_| c.get(&k))).await;
    assert_eq!(runs(&r), 1);
    assert!(
        all.iter()
            .all(|l| l.served == Served::Fresh && l.result == Ok(1))
    );
    // After cache_time: the stale value at once, and exactly one refresh.
    tokio::time::advance(Duration::from_secs(6)).await;
    let k = "k".to_string();
    let all = futures::future::join_all((0..50).map(|_| c.get(&k))).await;
    assert!(
        all.iter()
            .all(|l| l.served == Served::Stale && l.result == Ok(1))
    );
    settle().await;
    assert_eq!(runs(&r), 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let l = c.get(&"k".into()).await;
    assert_eq!((l.result, l.served), (Ok(2), Served::Fresh));
    assert_eq!(runs(&r), 2);
    // Different keys are independent.
    assert_eq!(c.get(&"other".into()).await.result, Ok(3));
}

#[tokio::test(start_paused = true)]
async fn timeout_then_the_run_serves_the_next_caller() {
    let (c, r) = cache(Script::new(8_000), policy());
    let start = Instant::now();
    let l = c.get(&"k".into()).await;
    assert_eq!(l.served, Served::Timeout);
    assert_eq!(
        l.result,
        Err(format!("timeout after {:?}", Duration::from_secs(5)))
    );
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    // A caller during the run joins it (no second run) and gets it at 8 s.
    let l = c.get(&"k".into()).await;
    assert_eq!((l.result, l.served), (Ok(1), Served::Ran));
    assert_eq!(start.elapsed(), Duration::from_secs(8));
    let l = c.get(&"k".into()).await;
    assert_eq!((l.result, l.served), (Ok(1), Served::Fresh));
    assert_eq!(runs(&r), 1);
}

#[tokio::test(start_paused = true)]
async fn exception_time_holds_a_failure_then_retries() {
    let s = Script::new(100);
    s.outcomes.lock().unwrap().push_back(Err("boom".into()));
    let p = Policy {
        cache_exception_time: Duration::from_secs(3),
        ..policy()
    };
    let (c, r) = cache(s, p);
    assert_eq!(c.get(&"k".into()).await.result, Err("boom".into()));
    tokio::time::advance(Duration::from_secs(2)).await;
    let l = c.get(&"k".into()).await;
    assert_eq!(
        (l.result, l.served),
        (Err("boom".into()), Served::CachedFailure)
    );
    assert_eq!(runs(&r), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    let l = c.get(&"k".into()).await;
    assert_eq!((l.result, l.served), (Ok(2), Served::Ran));
    assert_eq!(runs(&r), 2);
}

#[tokio::test(start_paused = true)]
async fn failures_are_not_remembered_by_default() {
    let s = Script::new(100);
    s.outcomes.lock().unwrap().push_back(Err("boom".into()));
    let (c, r) = cache(s, policy());
    assert_eq!(c.get(&"k".into()).await.result, Err("boom".into()));
    assert_eq!(c.get(&"k".into()).await.result, Ok(2));
    assert_eq!(runs(&r), 2);
}

#[tokio::test(start_paused = true)]
async fn stale_is_served_while_refreshes_fail_until_the_bound() {
    let s = Script::new(100);
    let outcomes = s.outcomes.clone();
    let (c, r) = cache(s, policy());
    assert_eq!(c.get(&"k".into()).await.result, Ok(1));
    for _ in 0..100 {
        outcomes.lock().unwrap().push_back(Err("down".into()));
    }
    // Past cache_time: stale served, refresh fails, still served.
    tokio::time::advance(Duration::from_secs(11)).await;
    let l = c.get(&"k".into()).await;
    assert_eq!((l.result, l.served), (Ok(1), Served::Stale));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let view = c.entries();
    assert_eq!(view[0].state, EntryState::Stale);
    assert!(view[0].failing_for.is_some());
    assert_eq!(view[0].last_error.as_deref(), Some("down"));
    // Retries are throttled (retry_after = min(cache_time, 5 s)).
    let l = c.get(&"k".into()).await;
    assert_eq!(l.served, Served::Stale);
    assert_eq!(runs(&r), 2);
    tokio::time::advance(Duration::from_secs(5)).await;
    c.get(&"k".into()).await;
    settle().await;
    assert_eq!(runs(&r), 3);
    // Beyond max_age (100 s): the stale value is no longer served.
    tokio::time::advance(Duration::from_secs(90)).await;
    let l = c.get(&"k".into()).await;
    assert_eq!((l.result, l.served), (Err("down".into()), Served::Ran));
    // Recovery.
    outcomes.lock().unwrap().clear();
    let l = c.get(&"k".into()).await;
    assert_eq!(l.served, Served::Ran);
    assert!(l.result.is_ok());
    assert!(c.entries()[0].failing_for.is_none());
}

#[tokio::test(start_paused = true)]
async fn uncached_runs_every_time_but_shares_concurrent_runs() {
    let (c, r) = cache(Script::new(500), Policy::uncached());
    let k = "k".to_string();
    let all = futures::future::join_all((0..20).map(|_| c.get(&k))).await;
    assert!(all.iter().all(|l| l.result == Ok(1)));
    assert_eq!(c.get(&"k".into()).await.result, Ok(2));
    assert_eq!(c.get(&"k".into()).await.result, Ok(3));
    assert_eq!(runs(&r), 3);
    assert_eq!(c.len(), 0, "nothing is kept");
}

#[tokio::test(start_paused = true)]
async fn cap_bounds_entries_under_random_keys() {
    let p = Policy {
        max_entries: 1000,
        ..policy()
    };
    let s = Script::new(0);
    let evicted = s.evicted.clone();
    let (c, r) = cache(s, p);
    for i in 0..10_000 {
        c.get(&format!("q={i}")).await;
        assert!(c.len() <= 1000);
    }
    assert_eq!(runs(&r), 10_000);
    assert!(evicted.load(Ordering::SeqCst) >= 9_000);
    // The most recent keys survive.
    let l = c.get(&"q=9999".into()).await;
    assert_eq!(l.served, Served::Fresh);
}

#[tokio::test(start_paused = true)]
async fn idle_entries_are_swept() {
    let p = Policy {
        gc_count: 0,
        ..policy()
    };
    let (c, _) = cache(Script::new(0), p);
    c.get(&"a".into()).await;
    c.get(&"b".into()).await;
    tokio::time::advance(Duration::from_secs(60)).await;
    c.get(&"b".into()).await;
    tokio::time::advance(Duration::from_secs(50)).await;
    assert_eq!(c.sweep(), 1);
    assert_eq!(c.len(), 1);
    assert_eq!(c.entries()[0].key, "b");
}

#[tokio::test(start_paused = true)]
async fn proactive_refresh_keeps_pollers_fresh() {
    let (c, r) = cache(Script::new(300), policy());
    let _m = c.spawn_maintenance();
    c.get(&"k".into()).await;
    // A poller every 3 s for 60 s never sees a stale value or waits for a run.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let l = c.get(&"k".into()).await;
        assert_eq!(l.served, Served::Fresh, "{l:?}");
    }
    // About one run per cache_time (10 s), never more than one per 5 s.
    let n = runs(&r);
    assert!((6..=12).contains(&n), "{n} runs");
    // Nobody asks any more: proactive refreshes stop.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = runs(&r);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(runs(&r), after);
}

#[tokio::test(start_paused = true)]
async fn hard_limit_abandons_a_hung_run() {
    let p = Policy {
        hard_limit: Duration::from_secs(20),
        ..policy()
    };
    let (c, r) = cache(Script::new(1_000_000), p);
    assert_eq!(c.get(&"k".into()).await.served, Served::Timeout);
    tokio::time::sleep(Duration::from_secs(11)).await;
    // This caller joins the hung run at 16 s and sees it abandoned at 20 s.
    let l = c.get(&"k".into()).await;
    assert_eq!(l.result, Err("abandoned".into()));
    assert_eq!(runs(&r), 1);
    // The key is not blocked for ever: the next request starts a new run.
    assert_eq!(c.get(&"k".into()).await.served, Served::Timeout);
    assert_eq!(runs(&r), 2);
}

#[tokio::test(start_paused = true)]
async fn zero_cache_time_refreshes_on_every_request_and_never_spins() {
    let p = Policy {
        cache_time: Duration::ZERO,
        ..policy()
    };
    let (c, r) = cache(Script::new(100), p);
    assert_eq!(c.get(&"k".into()).await.result, Ok(1));
    let l = c.get(&"k".into()).await;
    assert_eq!((l.result, l.served), (Ok(1), Served::Stale));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runs(&r), 2);
    assert_eq!(c.refresh_due(), 0);
    assert_eq!(c.get(&"k".into()).await.result, Ok(2));
}

#[tokio::test(start_paused = true)]
async fn preloaded_results_are_served_at_once() {
    let (c, r) = cache(Script::new(100), policy());
    assert!(c.preload("k".into(), 42, Duration::from_secs(3)));
    assert!(!c.preload("old".into(), 1, Duration::from_secs(1000)));
    let l = c.get(&"k".into()).await;
    assert_eq!((l.result, l.served), (Ok(42), Served::Fresh));
    assert_eq!(l.age, Some(Duration::from_secs(3)));
    assert!(c.preload("s".into(), 7, Duration::from_secs(50)));
    let l = c.get(&"s".into()).await;
    assert_eq!((l.result, l.served), (Ok(7), Served::Stale));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(runs(&r), 1);
    assert_eq!(c.get(&"s".into()).await.result, Ok(1));
}
