//! The `httpsd` binary: parse the command line, set up logging, run a command, and
//! turn errors into messages and exit codes.

use std::process::ExitCode;

use clap::Parser;
use httpsd::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_guard = httpsd::logging::init(cli.log_level, cli.log_format);
    let result = run(cli);
    // Flush queued log lines before the final error line, so the order is kept.
    drop(log_guard);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let settings = match httpsd::settings::ServeSettings::from_args(&args) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("Error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let security = match httpsd::security::SecuritySettings::from_args(&args.security) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("Error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let _sentry = match httpsd::sentry_report::init(args.sentry_url.as_deref()) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("Error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            httpsd::serve::warn_ignored_options(&args);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async {
                let addr = format!("{}:{}", settings.host, settings.port);
                let listener = tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
                httpsd::serve::run_with(
                    settings,
                    security,
                    listener,
                    httpsd::server::shutdown_signal(),
                )
                .await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => httpsd::check::run(args),
        Command::ServerOnly(args) => httpsd::scaleout::run_server(*args),
        Command::WorkerOnly(args) => httpsd::scaleout::run_worker(*args),
        Command::Generate { what } => {
            httpsd::cli::generate(&what, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
