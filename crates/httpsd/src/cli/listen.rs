//! The listener options every HTTP-serving command shares: the original's root,
//! host, port and URL prefix ([`ListenArgs`], for `serve` and `server-only`), the
//! connection limit and timeouts ([`ConnectionArgs`]), and TLS and authentication
//! ([`SecurityArgs`]) (both for `serve`, `server-only` and `worker-only`), with their
//! conversion into settings.

use std::path::PathBuf;

use clap::Args;

use crate::security::{SecurityError, SecuritySettings};
use crate::settings::{SettingsError, canonical_root, normalize_prefix, seconds};

/// The original's listener options and the root directory, shared by `serve` and
/// `server-only`.
#[derive(Debug, Args, Clone)]
pub struct ListenArgs {
    /// The directory of target generators.
    #[arg(value_name = "ROOT_DIR")]
    pub root_dir: PathBuf,
    /// Interface to bind.
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on.
    #[arg(short = 'p', long, default_value_t = 8080)]
    pub port: u16,
    /// Connection limit and timeouts.
    #[command(flatten)]
    pub connections: ConnectionArgs,
    /// Accepted for compatibility and ignored: httpsd runs one async worker per core.
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Serve every route under this prefix (e.g. /http_sd).
    #[arg(
        short = 'r',
        long = "url_prefix",
        visible_alias = "url-prefix",
        default_value = ""
    )]
    pub url_prefix: String,
}

/// Validates `args`: the canonical root directory and the normalised URL prefix.
pub fn root_and_prefix(args: &ListenArgs) -> Result<(PathBuf, String), SettingsError> {
    let root = canonical_root(&args.root_dir)?;
    let prefix = normalize_prefix(&args.url_prefix).map_err(|reason| SettingsError::Option {
        option: "--url_prefix",
        reason,
    })?;
    Ok((root, prefix))
}

/// The connection limit and timeouts of a listener, the same in `serve`, `server-only`
/// and `worker-only` (flattened into each).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Maximum number of concurrent client connections. When reached, the connection
    /// that has waited longest without sending a request is closed to let a new one in.
    #[arg(short = 'c', long, default_value_t = listener::DEFAULT_MAX_CONNECTIONS)]
    pub connection_limit: usize,
    /// Seconds a new connection may take to send its first request's headers; past it
    /// the connection is closed.
    #[arg(long, default_value_t = listener::DEFAULT_HEADER_TIMEOUT.as_secs_f64(), value_name = "SECONDS")]
    pub header_timeout: f64,
    /// Seconds a keep-alive connection may stay open between requests (the next
    /// request's headers must arrive within it).
    #[arg(long, default_value_t = listener::DEFAULT_IDLE_TIMEOUT.as_secs_f64(), value_name = "SECONDS")]
    pub idle_timeout: f64,
}

/// Validates `args` into the listener's [`listener::ConnectionLimits`].
pub fn connection_limits(
    args: &ConnectionArgs,
) -> Result<listener::ConnectionLimits, SettingsError> {
    if args.connection_limit == 0 {
        return Err(SettingsError::Option {
            option: "--connection-limit",
            reason: "must be at least 1".into(),
        });
    }
    Ok(listener::ConnectionLimits {
        max_connections: args.connection_limit,
        header_timeout: seconds("--header-timeout", args.header_timeout, 0.1..=3600.0)?,
        idle_timeout: seconds("--idle-timeout", args.idle_timeout, 0.1..=86400.0)?,
    })
}

/// The listener's TLS and authentication options, the same in `serve`, `server-only`
/// and `worker-only` (flattened into each).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecurityArgs {
    /// PEM certificate chain: serve HTTPS instead of HTTP (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require HTTP basic auth; FILE has `user:bcrypt-hash` lines (`htpasswd -B` format).
    #[arg(long, value_name = "FILE")]
    pub basic_auth_file: Option<PathBuf>,
    /// Accept `Authorization: Bearer TOKEN`; FILE has one token per line.
    #[arg(long, value_name = "FILE")]
    pub bearer_token_file: Option<PathBuf>,
    /// Serve /metrics without authentication.
    #[arg(long)]
    pub public_metrics: bool,
    /// Serve the admin page without authentication.
    #[arg(long)]
    pub public_admin: bool,
}

/// Loads the files named by `args` into [`SecuritySettings`].
pub fn security_settings(args: &SecurityArgs) -> Result<SecuritySettings, SecurityError> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        _ => None,
    };
    SecuritySettings::load(
        tls,
        args.basic_auth_file.as_deref(),
        args.bearer_token_file.as_deref(),
        args.public_metrics,
        args.public_admin,
    )
}
