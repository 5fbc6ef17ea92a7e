//! The command line, compatible with the original's click CLI: `-h` is `--host`, help
//! is `--help` only, `--log-level` takes Python levels and may come before or after
//! the subcommand.
//!
//! Every clap type lives in this tree, the top layer of the crate: each command's
//! arguments and their conversion into the plain settings struct its domain module
//! takes (nothing below imports `cli`). [`run`] dispatches a parsed command line.
//!
//! - [`listen`]: the listener options (root, host, port, prefix; TLS and auth) shared
//!   by `serve`, `server-only` and `worker-only`.
//! - [`serve`], [`check`], [`scaleout`]: each command's own arguments.
//! - [`runner`], [`cache`]: the runner and cache options, flattened into commands.

pub mod cache;
pub mod check;
pub mod listen;
pub mod runner;
pub mod scaleout;
pub mod serve;

use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};

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
    pub log_format: LogFormatArg,
    /// Print help.
    #[arg(long, global = true, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> LogFormat {
        match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a HTTP_SD server for Prometheus.
    #[command(disable_help_flag = true)]
    Serve(Box<serve::ServeArgs>),
    /// Run and verify the generators under the target directory.
    #[command(disable_help_flag = true)]
    Check(check::CheckArgs),
    /// Start a server-only instance (HTTP API + job enqueueing over Redis).
    #[command(name = "server-only", disable_help_flag = true)]
    ServerOnly(Box<scaleout::ServerOnlyArgs>),
    /// Start a worker-only instance (job processing over Redis).
    #[command(name = "worker-only", disable_help_flag = true)]
    WorkerOnly(Box<scaleout::WorkerOnlyArgs>),
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

/// A bad option value or file: reported like clap's usage errors (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

/// Marks an error in the options as a usage error.
fn usage<T>(r: Result<T, impl std::fmt::Display>) -> anyhow::Result<T> {
    r.map_err(|e| UsageError(e.to_string()).into())
}

/// Runs the parsed command line; bad option values are reported here (status 2).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match run_command(cli.command) {
        Err(e) if e.is::<UsageError>() => {
            eprintln!("Error: {e}");
            Ok(ExitCode::from(2))
        }
        other => other,
    }
}

fn run_command(command: Command) -> anyhow::Result<ExitCode> {
    use listener::{run_blocking, shutdown_signal};
    match command {
        Command::Serve(args) => {
            let settings = usage(serve::serve_settings(&args))?;
            let security = usage(listen::security_settings(&args.security))?;
            let _sentry = usage(crate::sentry_report::init(args.sentry_url.as_deref()))?;
            serve::warn_ignored_options(&args);
            let (host, port) = (settings.host.clone(), settings.port);
            run_blocking(&host, port, "", |listener| {
                crate::serve::run_with(settings, security, listener, shutdown_signal())
            })?;
        }
        Command::Check(args) => return crate::check::run(usage(check::check_settings(&args))?),
        Command::ServerOnly(args) => {
            let settings = usage(scaleout::server_settings(&args))?;
            let security = usage(listen::security_settings(&args.security))?;
            if args.listen.threads.is_some() {
                warn_ignored("-t/--threads (httpsd runs one async worker per core)");
            }
            run_blocking(&args.listen.host, args.listen.port, "", |listener| {
                crate::scaleout::frontend::run(settings, security, listener, shutdown_signal())
            })?;
        }
        Command::WorkerOnly(args) => {
            let settings = usage(scaleout::worker_settings(&args))?;
            let security = usage(listen::security_settings(&args.security))?;
            run_blocking(&args.host, args.port, " (worker metrics)", |listener| {
                crate::scaleout::worker::run(settings, security, listener, shutdown_signal())
            })?;
        }
        Command::Generate { what } => generate(&what, &mut std::io::stdout().lock())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Logs, once, an original option that this version accepts but does not use.
pub fn warn_ignored(option: &str) {
    tracing::warn!(
        option,
        "option accepted for compatibility but ignored by this version"
    );
}
