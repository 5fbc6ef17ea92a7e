//! The `httpsd` binary: parse the command line, set up logging, run the command
//! (`cli::run`), and turn errors into messages and exit codes.

use std::process::ExitCode;

use clap::Parser;
use httpsd::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_guard = httpsd::logging::init(cli.log_level, cli.log_format.into());
    let result = httpsd::cli::run(cli);
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
