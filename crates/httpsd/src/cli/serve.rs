//! `serve`'s command line and its conversion into [`ServeSettings`].

use clap::Args;

use super::cache::{CacheArgs, cache_settings};
use super::listen::{ListenArgs, SecurityArgs, connection_limits, root_and_prefix};
use super::runner::{RunnerArgs, runner_settings};
use crate::serve::ServeSettings;
use crate::settings::{DEFAULT_MAX_FILE_SIZE, SettingsError, seconds};

/// `serve`: the original's options, plus ours.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Root directory and listener options, shared with `server-only`.
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Accepted for compatibility and ignored (tracemalloc logging of the original).
    #[arg(short = 'v', long)]
    pub enable_tracer: bool,
    /// Sentry DSN: report generator failures and internal errors.
    #[arg(short = 's', long)]
    pub sentry_url: Option<String>,
    /// How dynamic generators are run.
    #[command(flatten)]
    pub runner: RunnerArgs,
    /// Caching and throttling of dynamic generators.
    #[command(flatten)]
    pub cache: CacheArgs,
    /// TLS and authentication.
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Refuse static files larger than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FILE_SIZE, value_name = "BYTES")]
    pub max_file_size: u64,
    /// Rescan the tree at least this often (seconds), even without file events.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub rescan_interval: f64,
}

/// Validates `args` into the settings of `serve`.
pub fn serve_settings(args: &ServeArgs) -> Result<ServeSettings, SettingsError> {
    let (root, prefix) = root_and_prefix(&args.listen)?;
    let rescan_interval = seconds("--rescan-interval", args.rescan_interval, 0.05..=3600.0)?;
    let runner = runner_settings(&root, &args.runner)?;
    let cache = cache_settings(&args.cache).with_max_run_time(runner.max_run_time);
    Ok(ServeSettings {
        root,
        host: args.listen.host.clone(),
        port: args.listen.port,
        prefix,
        connections: connection_limits(&args.listen.connections)?,
        max_file_size: args.max_file_size,
        rescan_interval,
        runner,
        cache,
    })
}

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
        super::warn_ignored(opt);
    }
}
