//! The `serve` command: its settings, and the wiring of the catalog, watcher,
//! runners, engine and HTTP routes, run on the accept loop until shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::engine::{Engine, start_tree};
use crate::http::{AppState, app, with_ops_layers};
use crate::metrics::Metrics;
use crate::security::SecuritySettings;

/// Settings of `serve`.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Canonical root directory.
    pub root: PathBuf,
    /// Host to bind.
    pub host: String,
    /// Port to bind.
    pub port: u16,
    /// Normalised URL prefix.
    pub prefix: String,
    /// Connection limit and timeouts.
    pub connections: listener::ConnectionLimits,
    /// Largest static file accepted.
    pub max_file_size: u64,
    /// Fallback rescan period.
    pub rescan_interval: Duration,
    /// Settings of the dynamic generator runners.
    pub runner: crate::runner::RunnerSettings,
    /// Caching of dynamic generator results.
    pub cache: crate::cache::CacheSettings,
}

/// Runs `serve` on an already bound listener until `shutdown` resolves, without TLS
/// or authentication.
pub async fn run(
    settings: ServeSettings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    run_with(settings, SecuritySettings::default(), listener, shutdown).await
}

/// Runs `serve` with TLS and authentication as set in `security`.
pub async fn run_with(
    settings: ServeSettings,
    security: SecuritySettings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let security = security.with_prefix(&settings.prefix);
    let metrics = Arc::new(Metrics::new());
    let (catalog, watcher, runners) = start_tree(
        &settings.root,
        settings.max_file_size,
        settings.rescan_interval,
        &settings.runner,
        metrics.clone(),
    )
    .await?;
    let engine = Arc::new(
        Engine::with_cache(
            catalog.clone(),
            runners.clone(),
            metrics.clone(),
            &settings.cache,
        )
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot use --cache-dir {}: {e}",
                settings
                    .cache
                    .cache_dir
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display()
            )
        })?,
    );
    let cache_tasks = engine.start_cache().await;
    let state = Arc::new(AppState {
        engine,
        metrics,
        prefix: settings.prefix.clone(),
    });
    let addr = listener.local_addr()?;
    let snapshot = catalog.snapshot();
    let scheme = security.scheme();
    tracing::info!(
        root = %settings.root.display(),
        generators = snapshot.listing.generators.len(),
        auth = security.policy.enabled(),
        "Serving on {scheme}://{addr}{}/targets",
        settings.prefix
    );
    let router = with_ops_layers(app(state), security.policy.clone());
    listener::run_with_tls(
        listener,
        router,
        settings.connections.clone(),
        security.tls.clone(),
        shutdown,
    )
    .await?;
    watcher.abort();
    cache_tasks.abort();
    runners.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
