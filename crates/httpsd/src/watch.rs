//! Keeps the catalog fresh: a file watcher for speed, plus a periodic rescan that does
//! not depend on it (watchers miss events on NFS, overlay mounts, or when inotify
//! limits are reached).

use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::new_debouncer;

use crate::catalog::Catalog;

/// Debounce window for file events: short, since new content must show within 1 s.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// Runs until the task is aborted: rescans on file events and every `fallback`.
pub async fn run(catalog: Arc<Catalog>, fallback: Duration) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let debouncer = new_debouncer(DEBOUNCE, None, move |_res| {
        let _ = tx.send(());
    });
    // Keep the watcher alive for the life of this task.
    let _watcher = match debouncer {
        Ok(mut d) => match d.watch(catalog.root(), RecursiveMode::Recursive) {
            Ok(()) => Some(d),
            Err(e) => {
                tracing::warn!(error = %e, "file watcher unavailable; changes are picked up by periodic rescans only");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "file watcher unavailable; changes are picked up by periodic rescans only");
            None
        }
    };
    // Look again at once: a file still settling when the catalog was built must not
    // wait for the fallback rescan.
    let mut recheck: Option<Duration> = Some(Duration::ZERO);
    loop {
        let wait = recheck.map_or(fallback, |r| r.min(fallback));
        tokio::select! {
            _ = rx.recv() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        while rx.try_recv().is_ok() {}
        let c = catalog.clone();
        recheck = match tokio::task::spawn_blocking(move || c.refresh()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "rescan of the target tree failed");
                None
            }
        };
    }
}
