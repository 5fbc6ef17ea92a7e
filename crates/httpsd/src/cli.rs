//! The command line, compatible with the original's click CLI: `-h` is `--host`, help
//! is `--help` only, `--log-level` takes Python levels and may come before or after
//! the subcommand.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

use crate::logging::{LogFormat, LogLevel};

/// Prometheus HTTP service discovery from a directory of generators.
#[derive(Debug, Parser)]
#[command(
    name = "httpsd",
    version,
    disable_help_flag = true,
    propagate_version = true
)]
pub struct Cli {
    /// Log level: Python's numeric levels (10, 20, 30, 40, 50) or names (debug, info, ...).
    #[arg(long, global = true, default_value = "20", value_name = "LEVEL")]
    pub log_level: LogLevel,
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Print help.
    #[arg(long, global = true, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a HTTP_SD server for Prometheus.
    #[command(disable_help_flag = true)]
    Serve(Box<ServeArgs>),
    /// Run and verify the generators under the target directory.
    #[command(disable_help_flag = true)]
    Check(crate::check::CheckArgs),
    /// Start a server-only instance (HTTP API + job enqueueing over Redis).
    #[command(name = "server-only", disable_help_flag = true)]
    ServerOnly(Box<crate::scaleout::ServerOnlyArgs>),
    /// Start a worker-only instance (job processing over Redis).
    #[command(name = "worker-only", disable_help_flag = true)]
    WorkerOnly(Box<crate::scaleout::WorkerOnlyArgs>),
    /// Print shell completions or the man page, generated from this CLI (for packagers).
    #[command(hide = true, disable_help_flag = true)]
    Generate {
        /// What to print.
        #[command(subcommand)]
        what: Generate,
    },
}

/// What `httpsd generate` prints.
#[derive(Debug, Clone, Subcommand)]
pub enum Generate {
    /// Shell completions on stdout.
    #[command(disable_help_flag = true)]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// The man page (roff) on stdout.
    #[command(disable_help_flag = true)]
    Man,
}

/// Writes completions or the man page for [`Cli`] to `out`.
pub fn generate(what: &Generate, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    match what {
        Generate::Completions { shell } => {
            clap_complete::generate(*shell, &mut cmd, "httpsd", out);
            Ok(())
        }
        Generate::Man => clap_mangen::Man::new(cmd).render(out),
    }
}

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
    /// Maximum number of concurrent client connections.
    #[arg(short = 'c', long, default_value_t = 1000)]
    pub connection_limit: usize,
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
    pub runner: crate::runner::RunnerArgs,
    /// Caching and throttling of dynamic generators.
    #[command(flatten)]
    pub cache: crate::cache::CacheArgs,
    /// TLS and authentication.
    #[command(flatten)]
    pub security: crate::security::SecurityArgs,
    /// Refuse static files larger than this many bytes.
    #[arg(long, default_value_t = 32 * 1024 * 1024, value_name = "BYTES")]
    pub max_file_size: u64,
    /// Rescan the tree at least this often (seconds), even without file events.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    pub rescan_interval: f64,
}
