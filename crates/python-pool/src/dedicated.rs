//! Module affinity: one pool of one worker per module, so a module imported with
//! [`crate::Import::Kept`] lives in exactly one interpreter and its state (a Counter,
//! a Histogram of probe latencies) is never split over several workers: every call
//! sees, and adds to, the same state. Calls to one module queue for its worker; calls
//! to different modules run in parallel. A worker that dies is replaced by its pool
//! (the module's state starts over, as after an edit).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::config::{PoolSettings, Warmth};
use crate::error::{PoolError, StartError};
use crate::pool::Pool;
use crate::protocol::Call;

/// A set of single-worker pools, one per module (by [`Call::module`]), started on the
/// module's first call.
pub struct Dedicated {
    settings: PoolSettings,
    pools: Mutex<HashMap<String, Arc<OnceCell<Pool>>>>,
}

impl Dedicated {
    /// No pool yet; each will be started from `settings` with one worker (its
    /// `workers` is ignored, except that 0 disables every call).
    pub fn new(settings: PoolSettings) -> Dedicated {
        Dedicated {
            settings,
            pools: Mutex::new(HashMap::new()),
        }
    }

    fn cell(&self, module: &str) -> Arc<OnceCell<Pool>> {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.entry(module.to_string()).or_default().clone()
    }

    /// The pool of `module`, started now when it has none (a failed start is tried
    /// again by the next call).
    async fn pool(&self, module: &str) -> Result<Pool, StartError> {
        let cell = self.cell(module);
        let pool = cell
            .get_or_try_init(|| async {
                let mut settings = self.settings.clone();
                settings.workers = settings.workers.min(1);
                Pool::start(settings, Warmth::Warm).await
            })
            .await?;
        Ok(pool.clone())
    }

    /// Starts the pool of `module` now (a scrape's deadline then never pays for an
    /// interpreter's start-up); a start that fails is logged and tried again later.
    pub async fn warm(&self, module: &str) {
        if let Err(e) = self.pool(module).await {
            tracing::warn!(module, error = %e, "cannot start a Python worker");
        }
    }

    /// Runs `call` on its module's own worker (see [`Pool::call`]).
    pub async fn call(&self, call: Call) -> Result<serde_json::Value, PoolError> {
        match self.pool(&call.module).await {
            Ok(pool) => pool.call(call).await,
            Err(error) => Err(PoolError::Start {
                name: call.name,
                error,
            }),
        }
    }

    /// The modules that have a started pool.
    pub fn modules(&self) -> Vec<String> {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .iter()
            .filter(|(_, c)| c.initialized())
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// Stops the pools of modules for which `keep` is false (deleted files).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        pools.retain(|module, cell| {
            let kept = keep(module);
            if !kept && let Some(pool) = cell.get() {
                pool.shutdown();
            }
            kept
        });
    }

    /// Kills every worker; later calls start new pools.
    pub fn shutdown(&self) {
        self.retain(|_| false);
    }

    /// Like [`Dedicated::shutdown`], but each pool is closed with [`Pool::close`]: its
    /// worker may finish its call and what it printed is logged.
    pub async fn close(&self, grace: std::time::Duration) {
        let started: Vec<Pool> = {
            let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
            pools
                .drain()
                .filter_map(|(_, c)| c.get().cloned())
                .collect()
        };
        futures::future::join_all(started.iter().map(|p| p.close(grace))).await;
    }
}
