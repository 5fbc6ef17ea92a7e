//! The runners' command-line options (shared by `serve`, `check` and `worker-only`)
//! and their conversion into [`RunnerSettings`].

use crate::runner::RunnerSettings;
use crate::settings::SettingsError;

/// Command-line options of the runners (shared by `serve`, `check` and `worker-only`).
#[derive(Debug, Clone, clap::Args)]
pub struct RunnerArgs {
    /// Python interpreter for `.py` generators (e.g. a virtualenv's bin/python).
    #[arg(long, default_value = "python3", value_name = "PATH")]
    pub python: std::path::PathBuf,
    /// Number of Python worker processes (default: twice the cores, between 4 and 32;
    /// 0 disables Python generators).
    #[arg(long, value_name = "N")]
    pub python_workers: Option<usize>,
    /// Hard limit on one generator run, in seconds: past it the run fails and its
    /// process (group) is killed.
    #[arg(long, default_value_t = 120.0, value_name = "SECONDS")]
    pub max_run_time: f64,
    /// Address-space limit of each Python worker in MiB (0: no limit); a generator
    /// that allocates past it gets a MemoryError and its worker is replaced.
    #[arg(long, default_value_t = 4096, value_name = "MIB")]
    pub python_memory_limit: u64,
}

/// Validated runner settings from the command line.
pub fn runner_settings(
    root: &std::path::Path,
    args: &RunnerArgs,
) -> Result<RunnerSettings, SettingsError> {
    if !(args.max_run_time > 0.0 && args.max_run_time <= 86_400.0) {
        return Err(SettingsError::Option {
            option: "--max-run-time",
            reason: format!("{} is not between 0 and 86400 seconds", args.max_run_time),
        });
    }
    let Some(python_memory_limit) = args.python_memory_limit.checked_mul(1024 * 1024) else {
        return Err(SettingsError::Option {
            option: "--python-memory-limit",
            reason: format!("{} MiB is too large", args.python_memory_limit),
        });
    };
    if (1..64).contains(&args.python_memory_limit) {
        return Err(SettingsError::Option {
            option: "--python-memory-limit",
            reason: format!(
                "{} MiB is too small for a Python interpreter (use at least 64, or 0 for no limit)",
                args.python_memory_limit
            ),
        });
    }
    Ok(RunnerSettings {
        root: root.to_path_buf(),
        max_run_time: std::time::Duration::from_secs_f64(args.max_run_time),
        python: args.python.clone(),
        python_workers: args
            .python_workers
            .unwrap_or_else(crate::runner::python::default_workers),
        python_memory_limit,
    })
}
