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

/// Prints a usage error (a bad option value or file) the way clap does: exit status 2.
fn usage_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("Error: {e}");
    ExitCode::from(2)
}

/// Runs the parsed command line; bad option values are reported here (status 2).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let settings = match serve::serve_settings(&args) {
                Ok(s) => s,
                Err(e) => return Ok(usage_error(e)),
            };
            let security = match listen::security_settings(&args.security) {
                Ok(s) => s,
                Err(e) => return Ok(usage_error(e)),
            };
            let _sentry = match crate::sentry_report::init(args.sentry_url.as_deref()) {
                Ok(g) => g,
                Err(e) => return Ok(usage_error(e)),
            };
            serve::warn_ignored_options(&args);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let addr = format!("{}:{}", settings.host, settings.port);
                let listener = tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
                crate::serve::run_with(
                    settings,
                    security,
                    listener,
                    crate::listener::shutdown_signal(),
                )
                .await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => match check::check_settings(&args) {
            Ok(settings) => crate::check::run(settings),
            Err(e) => Ok(usage_error(e)),
        },
        Command::ServerOnly(args) => {
            let settings = match scaleout::server_settings(&args) {
                Ok(s) => s,
                Err(e) => return Ok(usage_error(e)),
            };
            let security = match listen::security_settings(&args.security) {
                Ok(s) => s,
                Err(e) => return Ok(usage_error(e)),
            };
            if args.listen.threads.is_some() {
                warn_ignored("-t/--threads (httpsd runs one async worker per core)");
            }
            crate::scaleout::run_server(settings, security, &args.listen.host, args.listen.port)
        }
        Command::WorkerOnly(args) => {
            let settings = match scaleout::worker_settings(&args) {
                Ok(s) => s,
                Err(e) => return Ok(usage_error(e)),
            };
            let security = match listen::security_settings(&args.security) {
                Ok(s) => s,
                Err(e) => return Ok(usage_error(e)),
            };
            crate::scaleout::run_worker(settings, security, &args.host, args.port)
        }
        Command::Generate { what } => {
            generate(&what, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Logs, once, an original option that this version accepts but does not use.
pub fn warn_ignored(option: &str) {
    tracing::warn!(
        option,
        "option accepted for compatibility but ignored by this version"
    );
}
