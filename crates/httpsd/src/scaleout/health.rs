//! Redis reachability: one task per process that pings Redis every second, logs
//! once when it becomes unreachable and once when it is back (a clear message
//! instead of a crash or a flood), and keeps the reachability and queue gauges current.

use std::time::Duration;

use super::store::Store;
use crate::metrics::{self, RedisMetrics};

/// Watches Redis: logs when it becomes unreachable and when it is back, and keeps the
/// reachability and queue gauges current.
pub async fn monitor(store: Store, metrics: RedisMetrics, url: String) {
    let mut up: Option<bool> = None;
    loop {
        let result = match store.ping().await {
            Ok(()) => store.queue_lengths().await.map(Some),
            Err(e) => Err(e),
        };
        match result {
            Ok(lengths) => {
                if up != Some(true) {
                    tracing::info!(redis = %url, "connected to Redis");
                }
                up = Some(true);
                metrics.redis_up.set(1);
                if let Some((queued, pending)) = lengths {
                    set_queue_gauges(&metrics, queued, pending);
                }
            }
            Err(e) => {
                if up != Some(false) {
                    tracing::error!(
                        redis = %url,
                        error = %e.reason,
                        "cannot reach Redis; answering what is possible, 503 otherwise, and retrying every second"
                    );
                }
                up = Some(false);
                metrics.redis_up.set(0);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Sets `httpsd_update_queue_jobs{status}` from the queue and pending-set sizes.
pub fn set_queue_gauges(metrics: &RedisMetrics, queued: u64, pending: u64) {
    let gauge = |status: &str| {
        metrics
            .queue_jobs
            .get_or_create(&metrics::QueueStatusLabel {
                status: status.to_string(),
            })
            .clone()
    };
    gauge("pending").set(i64::try_from(queued).unwrap_or(i64::MAX));
    gauge("processing").set(i64::try_from(pending.saturating_sub(queued)).unwrap_or(i64::MAX));
}
