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
use crate::runner::python::Warmth;
use crate::runner::{RunnerSettings, Runners};
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

/// Scans the tree once, keeps it fresh (the returned watcher task), and starts the
/// runners (the Python pool warm only when the tree has Python generators): what
/// `serve` and `worker-only` start with.
pub async fn start_tree(
    root: &std::path::Path,
    max_file_size: u64,
    rescan_interval: std::time::Duration,
    runner: &RunnerSettings,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Arc<Catalog>, tokio::task::JoinHandle<()>, Arc<Runners>)> {
    let root = root.to_path_buf();
    let catalog = Arc::new(
        tokio::task::spawn_blocking(move || Catalog::new(&root, max_file_size, metrics)).await?,
    );
    let watcher = tokio::spawn(crate::watch::run(catalog.clone(), rescan_interval));
    // Warm when the tree has a Python generator now, lazy otherwise (a tree without
    // Python keeps no interpreter resident until one appears).
    let has_python = (catalog.snapshot().listing.generators.iter())
        .any(|g| g.kind == crate::tree::GeneratorKind::Python);
    let warmth = if has_python {
        Warmth::Warm
    } else {
        Warmth::Lazy
    };
    let runners = match Runners::start(runner, warmth).await {
        Ok(r) => Arc::new(r),
        Err(e) => {
            watcher.abort();
            anyhow::bail!("cannot start the generator runners: {e}");
        }
    };
    Ok((catalog, watcher, runners))
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
