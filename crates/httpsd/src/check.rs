//! The `check` command (placeholder until the check issue lands).

use std::process::ExitCode;

/// Arguments of `check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// Arguments (not used yet).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs `check`.
pub fn run(_args: CheckArgs) -> anyhow::Result<ExitCode> {
    eprintln!("Error: `check` is not implemented yet in this version of httpsd");
    Ok(ExitCode::from(2))
}
