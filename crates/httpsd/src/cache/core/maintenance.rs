//! The cache's upkeep, apart from lookups: sweeping entries nobody asks for, proactive
//! refresh of entries about to expire, the task that runs both, preloading results read
//! back from disk, and the admin page's view of the entries.

use super::*;

impl<S: Source> Cache<S> {
    /// Removes entries nobody requested for longer than the stale bound (when there
    /// are more than `garbage_collection_count`). Returns how many were removed.
    pub fn sweep(&self) -> usize {
        let p = &self.inner.policy;
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() <= p.gc_count {
            return 0;
        }
        let idle_for = p.idle_for();
        let before = map.len();
        let source = &self.inner.source;
        map.retain(|k, e| {
            let keep = e.flight.is_some() || now.saturating_duration_since(e.touched()) < idle_for;
            if !keep {
                source.evicted(k);
            }
            keep
        });
        let removed = before - map.len();
        self.count_evictions("idle", removed as u64);
        self.set_size(map.len());
        removed
    }

    /// Starts background refreshes of recently requested entries that would expire
    /// before the next pass. Returns how many were started.
    pub fn refresh_due(&self) -> usize {
        let p = &self.inner.policy;
        // cache_time 0: every request already starts a refresh; a pass would spin.
        if !p.enabled || p.cache_time.is_zero() {
            return 0;
        }
        let now = Instant::now();
        let recent = p.recent_window();
        let mut map = self.lock();
        let due: Vec<S::Key> = map
            .iter()
            .filter(|(_, e)| {
                e.flight.is_none()
                    && !e.throttled(p, now)
                    && e.requested
                        .is_some_and(|r| now.saturating_duration_since(r) < recent)
                    && e.good.as_ref().is_some_and(|(_, at)| {
                        // Refresh in the pass before expiry, early enough for a run as long
                        // as the last one (twice, for margin) to finish before it, but never
                        // in the first half of cache_time (that would waste a run).
                        *at + p.cache_time <= now + p.refresh_period() + e.last_run * 2
                            && now.saturating_duration_since(*at) >= p.cache_time / 2
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &due {
            if let Some(e) = map.get_mut(k) {
                self.start(k, e, Trigger::Proactive);
            }
        }
        due.len()
    }

    /// Runs the proactive refresh and idle sweep passes until the task is aborted.
    pub fn spawn_maintenance(&self) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let p = cache.policy().clone();
            let mut refresh = tokio::time::interval(p.refresh_period());
            let mut sweep = tokio::time::interval(p.gc_interval);
            refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = refresh.tick() => { cache.refresh_due(); }
                    _ = sweep.tick() => { cache.sweep(); }
                }
            }
        })
    }

    /// Inserts a result obtained `age` ago (from disk), unless it is too old or the key
    /// already has one. It is served like any other result; it is not refreshed
    /// proactively until someone requests it.
    pub fn preload(&self, key: S::Key, value: S::Value, age: Duration) -> bool {
        let p = &self.inner.policy;
        if !p.enabled || age >= p.max_age {
            return false;
        }
        let now = Instant::now();
        let Some(at) = now.checked_sub(age) else {
            return false;
        };
        let mut map = self.lock();
        if map.contains_key(&key) {
            return false;
        }
        self.make_room(&mut map);
        let mut e = Entry::new(now);
        e.good = Some((value, at));
        map.insert(key, e);
        self.set_size(map.len());
        true
    }

    /// A view of every entry (for the admin page and debug output).
    pub fn entries(&self) -> Vec<EntryView<S::Key, S::Error>> {
        let p = &self.inner.policy;
        let now = Instant::now();
        let map = self.lock();
        map.iter()
            .map(|(k, e)| {
                let age = e
                    .good
                    .as_ref()
                    .map(|(_, at)| now.saturating_duration_since(*at));
                let state = match age {
                    None => EntryState::Empty,
                    Some(a) if a < p.cache_time => EntryState::Fresh,
                    Some(a) if a < p.max_age => EntryState::Stale,
                    Some(_) => EntryState::Expired,
                };
                EntryView {
                    key: k.clone(),
                    state,
                    age,
                    refreshing: e.flight.is_some(),
                    failing_for: e.failing_since.map(|s| now.saturating_duration_since(s)),
                    last_error: e
                        .failing_since
                        .and(e.failure.as_ref().map(|(f, _)| f.clone())),
                    since_request: e.requested.map(|r| now.saturating_duration_since(r)),
                }
            })
            .collect()
    }
}
