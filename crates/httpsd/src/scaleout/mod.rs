//! Scale-out over Redis: `server-only` and `worker-only` (placeholder until the
//! scale-out issue lands).

use std::process::ExitCode;

/// Arguments of `server-only`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerOnlyArgs {
    /// Arguments (not used yet).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Arguments of `worker-only`.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerOnlyArgs {
    /// Arguments (not used yet).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs `server-only`.
pub fn run_server(_args: ServerOnlyArgs) -> anyhow::Result<ExitCode> {
    eprintln!("Error: `server-only` is not implemented yet in this version of httpsd");
    Ok(ExitCode::from(2))
}

/// Runs `worker-only`.
pub fn run_worker(_args: WorkerOnlyArgs) -> anyhow::Result<ExitCode> {
    eprintln!("Error: `worker-only` is not implemented yet in this version of httpsd");
    Ok(ExitCode::from(2))
}
