//! The command lines of `server-only` and `worker-only` (Redis, freshness, the
//! worker's loops, the same listener options as `serve`) and their conversion into
//! [`ServerSettings`] and [`WorkerSettings`].

use std::path::PathBuf;
use std::time::Duration;

use super::cache::{parse_positive_seconds, parse_seconds};
use super::listen::{ConnectionArgs, ListenArgs, SecurityArgs, connection_limits, root_and_prefix};
use super::runner::{RunnerArgs, runner_settings};
use crate::scaleout::conn::RedisTarget;
use crate::scaleout::frontend::ServerSettings;
use crate::scaleout::keys::Keys;
use crate::scaleout::worker::{WorkerSettings, hostname};
use crate::settings::{DEFAULT_MAX_FILE_SIZE, SettingsError, canonical_root, seconds};

/// Default Redis URL (the original's).
pub const DEFAULT_REDIS_URL: &str = "redis://localhost:6379/0";

/// Options shared by both commands: where Redis is, which keys are ours, and how old
/// a result may be.
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
    /// A result is fresh for this many seconds; after that a request queues a refresh.
    #[arg(long, default_value = "300", value_name = "SECONDS", value_parser = parse_seconds)]
    pub cache_time: Duration,
    /// After --cache-time, a result is still served for this many seconds while a
    /// worker refreshes it (stale-while-revalidate); after that it is a miss.
    #[arg(long, default_value = "300", value_name = "SECONDS", value_parser = parse_seconds)]
    pub max_stale: Duration,
    /// Maximum age of a served result in seconds, as in the original and in `serve`:
    /// nothing older is served (it caps --cache-time + --max-stale); the worker's
    /// Redis TTL of a result.
    #[arg(short = 'm', long, value_name = "SECONDS", value_parser = parse_positive_seconds)]
    pub cache_seconds: Option<Duration>,
}

/// Arguments of `server-only`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerOnlyArgs {
    /// Root directory (the same tree the workers see) and listener options, as in `serve`.
    #[command(flatten)]
    pub listen: ListenArgs,
    /// TLS and authentication, as in `serve`.
    #[command(flatten)]
    pub security: SecurityArgs,
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
    /// TLS and authentication of the worker's metrics server, as in `serve`.
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Connection limit and timeouts of the worker's metrics server, as in `serve`.
    #[command(flatten)]
    pub connections: ConnectionArgs,
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
    pub runner: RunnerArgs,
    /// Refuse static files larger than this many bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FILE_SIZE, value_name = "BYTES")]
    pub max_file_size: u64,
    /// Rescan the tree at least this often (seconds), even without file events.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub rescan_interval: f64,
}

/// The freshness rules of `RedisArgs`: (fresh for, longest age served), with `-m`
/// capping both, as `serve`'s `-m` caps `cache_time` and `cache_time + --max-stale`.
pub fn freshness(args: &RedisArgs) -> (Duration, Duration) {
    let mut fresh = args.cache_time;
    let mut max_age = args.cache_time.saturating_add(args.max_stale);
    if let Some(m) = args.cache_seconds {
        fresh = fresh.min(m);
        max_age = max_age.min(m);
    }
    (fresh, max_age)
}

/// Checks the key prefix.
fn check_prefix(prefix: &str) -> Result<(), SettingsError> {
    if prefix.is_empty() || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SettingsError::Option {
            option: "--redis-prefix",
            reason: format!("{prefix:?} must be non-empty, without spaces or control characters"),
        });
    }
    Ok(())
}

/// Reads the Redis TLS files and checks the URL.
fn redis_target(args: &RedisArgs) -> Result<RedisTarget, SettingsError> {
    let read = |option: &'static str, path: &Option<PathBuf>| match path {
        None => Ok(None),
        Some(p) => std::fs::read(p)
            .map(Some)
            .map_err(|e| SettingsError::Option {
                option,
                reason: format!("cannot read {}: {e}", p.display()),
            }),
    };
    let ca_cert = read("--redis-ca-cert", &args.redis_ca_cert)?;
    let client_tls = match (
        read("--redis-client-cert", &args.redis_client_cert)?,
        read("--redis-client-key", &args.redis_client_key)?,
    ) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(SettingsError::Option {
                option: "--redis-client-cert",
                reason: "--redis-client-cert and --redis-client-key go together".into(),
            });
        }
    };
    RedisTarget::new(args.redis_url.clone(), ca_cert, client_tls)
}

/// Validates `args` into the settings of `server-only`.
pub fn server_settings(args: &ServerOnlyArgs) -> Result<ServerSettings, SettingsError> {
    let (root, prefix) = root_and_prefix(&args.listen)?;
    check_prefix(&args.redis.redis_prefix)?;
    let (fresh, max_age) = freshness(&args.redis);
    Ok(ServerSettings {
        root,
        prefix,
        connections: connection_limits(&args.listen.connections)?,
        redis: redis_target(&args.redis)?,
        keys: Keys::new(&args.redis.redis_prefix),
        fresh: fresh.as_secs_f64(),
        max_stale: max_age.saturating_sub(fresh).as_secs_f64(),
        wait: seconds("--wait", args.wait, 0.0..=3600.0)?,
        reload_timeout: seconds(
            "--hard-reload-timeout",
            args.hard_reload_timeout,
            0.0..=3600.0,
        )?,
        reload_poll: seconds(
            "--hard-reload-poll-interval",
            args.hard_reload_poll_interval,
            0.01..=60.0,
        )?,
        rescan_interval: seconds("--rescan-interval", args.rescan_interval, 0.05..=3600.0)?,
    })
}

/// Validates `args` into the settings of `worker-only`.
pub fn worker_settings(args: &WorkerOnlyArgs) -> Result<WorkerSettings, SettingsError> {
    let root = canonical_root(&args.root_dir)?;
    check_prefix(&args.redis.redis_prefix)?;
    let worker_ids = match &args.worker_id {
        Some(id) if id.trim().is_empty() || id.chars().any(char::is_control) => {
            return Err(SettingsError::Option {
                option: "--worker-id",
                reason: "must be non-empty, without control characters".into(),
            });
        }
        Some(id) => vec![id.clone()],
        None => {
            if !(1..=1024).contains(&args.num_workers) {
                return Err(SettingsError::Option {
                    option: "--num-workers",
                    reason: format!("{} is not between 1 and 1024", args.num_workers),
                });
            }
            let base = format!("{}-{}", hostname(), std::process::id());
            (0..args.num_workers)
                .map(|i| format!("{base}-{i}"))
                .collect()
        }
    };
    if args.stale_job_check_interval == 0 {
        return Err(SettingsError::Option {
            option: "--stale-job-check-interval",
            reason: "must be at least 1 second".into(),
        });
    }
    let (_, max_age) = freshness(&args.redis);
    Ok(WorkerSettings {
        worker_ids,
        redis: redis_target(&args.redis)?,
        keys: Keys::new(&args.redis.redis_prefix),
        // Redis TTLs are whole seconds: round up, so a result is never dropped early.
        result_ttl: (max_age.as_secs_f64().ceil() as u64).max(1),
        stale_job_timeout: args.stale_job_timeout as f64,
        stale_job_check_interval: Duration::from_secs(args.stale_job_check_interval),
        heartbeat_timeout: seconds("--heartbeat-timeout", args.heartbeat_timeout, 0.5..=3600.0)?,
        shutdown_timeout: seconds("--shutdown-timeout", args.shutdown_timeout, 0.0..=3600.0)?,
        max_file_size: args.max_file_size,
        rescan_interval: seconds("--rescan-interval", args.rescan_interval, 0.05..=3600.0)?,
        runner: runner_settings(&root, &args.runner)?,
        connections: connection_limits(&args.connections)?,
        root,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        redis: RedisArgs,
    }

    fn fresh_and_max(args: &[&str]) -> (u64, u64) {
        let mut v = vec!["t"];
        v.extend_from_slice(args);
        let (f, m) = freshness(&T::try_parse_from(v).unwrap().redis);
        (f.as_secs(), m.as_secs())
    }

    #[test]
    fn cache_seconds_is_the_longest_age_served() {
        assert_eq!(fresh_and_max(&[]), (300, 600));
        // The original's deployments: nothing older than -m is served.
        assert_eq!(fresh_and_max(&["-m", "300"]), (300, 300));
        assert_eq!(fresh_and_max(&["-m", "100"]), (100, 100));
        assert_eq!(fresh_and_max(&["-m", "400"]), (300, 400));
        assert_eq!(
            fresh_and_max(&["--cache-time", "2", "--max-stale", "60"]),
            (2, 62)
        );
    }
}
