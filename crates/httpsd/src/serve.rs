//! The `serve` command: wires the catalog, watcher, runners, engine and HTTP layer
//! together and runs until shutdown.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::catalog::Catalog;
use crate::cli::ServeArgs;
use crate::engine::Engine;
use crate::http::{AppState, app, with_ops_layers};
use crate::metrics::Metrics;
use crate::runner::Runners;
use crate::security::SecuritySettings;
use crate::settings::ServeSettings;

/// Logs, once, each original option that this version accepts but does not use.
pub fn warn_ignored_options(args: &ServeArgs) {
    let mut ignored: Vec<&str> = Vec::new();
    if args.listen.threads.is_some() {
        ignored.push("-t/--threads (httpsd runs one async worker per core)");
    }
    if args.enable_tracer {
        ignored.push("-v/--enable-tracer (no tracemalloc in Rust; see /metrics for memory)");
    }
    ignored.extend(args.cache.ignored_options());
    for opt in ignored {
        tracing::warn!(
            option = opt,
            "option accepted for compatibility but ignored by this version"
        );
    }
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
    let root = settings.root.clone();
    let max = settings.max_file_size;
    let m = metrics.clone();
    let catalog = Arc::new(tokio::task::spawn_blocking(move || Catalog::new(&root, max, m)).await?);
    let watcher = tokio::spawn(crate::watch::run(catalog.clone(), settings.rescan_interval));
    let runners = Arc::new(
        Runners::start(
            &settings.runner,
            crate::runner::python::Warmth::for_tree(&catalog),
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot start the generator runners: {e}"))?,
    );
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
    let scheme = if security.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(
        root = %settings.root.display(),
        generators = snapshot.listing.generators.len(),
        auth = security.policy.enabled(),
        "Serving on {scheme}://{addr}{}/targets",
        settings.prefix
    );
    let router = with_ops_layers(app(state), security.policy.clone());
    crate::server::run_with_tls(
        listener,
        router,
        settings.connection_limit,
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
