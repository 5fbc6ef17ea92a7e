//! Scale-out over Redis: `server-only` (stateless HTTP servers that answer from Redis
//! and queue work) and `worker-only` (processes that run generators with the same
//! engine as `serve` and store the results). See docs/scale-out.md.

pub mod conn;
pub mod health;
pub mod keys;
pub mod server;
pub mod store;
pub mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

/// Default Redis URL (the original's).
pub const DEFAULT_REDIS_URL: &str = "redis://localhost:6379/0";

/// Options shared by both commands: where Redis is and which keys are ours.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Redis URL: redis://[user][:password@]host[:port][/db], rediss:// for TLS.
    /// Also read from HTTPSD_REDIS_URL, which keeps a password off the command line.
    #[arg(long, env = "HTTPSD_REDIS_URL", default_value = DEFAULT_REDIS_URL, hide_env_values = true)]
    pub redis_url: String,
    /// PEM file of the CA that signed Redis's certificate (rediss:// with a private CA).
    #[arg(long, value_name = "FILE")]
    pub redis_ca_cert: Option<PathBuf>,
    /// PEM client certificate for Redis (mutual TLS), with --redis-client-key.
    #[arg(long, value_name = "FILE")]
    pub redis_client_cert: Option<PathBuf>,
    /// PEM private key of --redis-client-cert.
    #[arg(long, value_name = "FILE")]
    pub redis_client_key: Option<PathBuf>,
    /// Namespace of every key: deployments with different prefixes share a Redis
    /// without seeing each other.
    #[arg(long, default_value = "httpsd:")]
    pub redis_prefix: String,
    /// A result is fresh for this many seconds (worker: also its Redis TTL, plus --max-stale).
    #[arg(short = 'm', long, default_value_t = 300)]
    pub cache_seconds: u64,
    /// After --cache-seconds, a result is still served for this many seconds while a
    /// worker refreshes it (stale-while-revalidate); after that it is a miss.
    #[arg(long, default_value_t = 300)]
    pub max_stale: u64,
}

/// Arguments of `server-only`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerOnlyArgs {
    /// Root directory (the same tree the workers see) and listener options, as in `serve`.
    #[command(flatten)]
    pub listen: crate::cli::ListenArgs,
    /// Redis connection, key prefix and freshness.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// On a miss, wait this many seconds for a worker's result before answering 503.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub wait: f64,
    /// `?reload=true` waits this many seconds for the new result.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub hard_reload_timeout: f64,
    /// `?reload=true` polls Redis this often.
    #[arg(long, default_value_t = 0.5, value_name = "SECONDS")]
    pub hard_reload_poll_interval: f64,
    /// Rescan the tree at least this often (seconds), even without file events.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub rescan_interval: f64,
}

/// Arguments of `worker-only`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerOnlyArgs {
    /// The directory of target generators.
    #[arg(value_name = "ROOT_DIR")]
    pub root_dir: PathBuf,
    /// Run a single worker with this id (overrides --num-workers). Ids must be unique
    /// across the deployment; by default they are `<host>-<pid>-<n>`.
    #[arg(long)]
    pub worker_id: Option<String>,
    /// Number of concurrent jobs (worker loops) in this process.
    #[arg(long, default_value_t = 4)]
    pub num_workers: usize,
    /// Redis connection, key prefix and freshness.
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Interface of the worker's metrics server.
    #[arg(short = 'h', long, default_value = "0.0.0.0")]
    pub host: String,
    /// Port of the worker's metrics server.
    #[arg(short = 'p', long, default_value_t = 8081)]
    pub port: u16,
    /// A job running longer than this (seconds) on a live worker is queued again.
    #[arg(long, default_value_t = 300)]
    pub stale_job_timeout: u64,
    /// How often (seconds) to look for jobs of dead or stuck workers (first check at startup).
    #[arg(long, default_value_t = 60)]
    pub stale_job_check_interval: u64,
    /// A worker whose heartbeat is older than this (seconds) is dead and its jobs are queued again.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub heartbeat_timeout: f64,
    /// On SIGTERM/SIGINT, wait this long (seconds) for running jobs, then hand them back.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    pub shutdown_timeout: f64,
    /// How dynamic generators are run.
    #[command(flatten)]
    pub runner: crate::runner::RunnerArgs,
    /// Refuse static files larger than this many bytes.
    #[arg(long, default_value_t = 32 * 1024 * 1024, value_name = "BYTES")]
    pub max_file_size: u64,
    /// Rescan the tree at least this often (seconds), even without file events.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub rescan_interval: f64,
}

/// Checks that a duration option is a finite number within `range`.
fn seconds(
    option: &'static str,
    value: f64,
    range: std::ops::RangeInclusive<f64>,
) -> Result<std::time::Duration, crate::settings::SettingsError> {
    if !value.is_finite() || !range.contains(&value) {
        return Err(crate::settings::SettingsError::Option {
            option,
            reason: format!(
                "{value} is not between {} and {} seconds",
                range.start(),
                range.end()
            ),
        });
    }
    Ok(std::time::Duration::from_secs_f64(value))
}

/// Checks the key prefix.
fn check_prefix(prefix: &str) -> Result<(), crate::settings::SettingsError> {
    if prefix.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(crate::settings::SettingsError::Option {
            option: "--redis-prefix",
            reason: format!("{prefix:?} must be non-empty, without spaces or control characters"),
        });
    }
    Ok(())
}

/// Runs `server-only`.
pub fn run_server(args: ServerOnlyArgs) -> anyhow::Result<ExitCode> {
    let settings = match server::ServerSettings::from_args(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if args.listen.threads.is_some() {
        tracing::warn!(
            option = "-t/--threads (httpsd runs one async worker per core)",
            "option accepted for compatibility but ignored by this version"
        );
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let addr = format!("{}:{}", args.listen.host, args.listen.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        server::run(settings, listener, crate::server::shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `worker-only`.
pub fn run_worker(args: WorkerOnlyArgs) -> anyhow::Result<ExitCode> {
    let settings = match worker::WorkerSettings::from_args(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (worker metrics): {e}"))?;
        worker::run(settings, listener, crate::server::shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}
