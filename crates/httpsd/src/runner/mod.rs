//! Runs dynamic generators (Python scripts and executables) and returns their raw
//! JSON output. Validation, caching and merging happen above this layer.

pub mod exec;
mod polled_pipe;
pub mod python;

use crate::error::GeneratorError;
use crate::params::Params;
use crate::tree::{GeneratorFile, GeneratorKind};

/// Whether a run serves a request or validates a tree (`check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunMode {
    /// Normal serving: `generate_targets(**params)`.
    Serve,
    /// `check`: `PROMETHEUS_HTTP_SD_IS_TEST=1`, `test_generate_targets()` when defined.
    Check,
}

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

/// Settings for the runners.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// The generator root (working directory of executables, on Python's `sys.path`).
    pub root: std::path::PathBuf,
    /// Hard limit on one run.
    pub max_run_time: std::time::Duration,
    /// Python interpreter of the worker pool.
    pub python: std::path::PathBuf,
    /// Number of Python workers (0 disables Python generators).
    pub python_workers: usize,
    /// Address-space limit of each Python worker in bytes (0: none).
    pub python_memory_limit: u64,
}

impl RunnerSettings {
    /// Validated settings from the command line.
    pub fn from_args(
        root: &std::path::Path,
        args: &RunnerArgs,
    ) -> Result<RunnerSettings, crate::settings::SettingsError> {
        if !(args.max_run_time > 0.0 && args.max_run_time <= 86_400.0) {
            return Err(crate::settings::SettingsError::Option {
                option: "--max-run-time",
                reason: format!("{} is not between 0 and 86400 seconds", args.max_run_time),
            });
        }
        let Some(python_memory_limit) = args.python_memory_limit.checked_mul(1024 * 1024) else {
            return Err(crate::settings::SettingsError::Option {
                option: "--python-memory-limit",
                reason: format!("{} MiB is too large", args.python_memory_limit),
            });
        };
        if (1..64).contains(&args.python_memory_limit) {
            return Err(crate::settings::SettingsError::Option {
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
            python_workers: args.python_workers.unwrap_or_else(python::default_workers),
            python_memory_limit,
        })
    }
}

/// All dynamic runners, dispatching on the generator's kind.
pub struct Runners {
    python: python::PythonRunner,
    exec: exec::ExecRunner,
}

/// The number of cores this process may use (2 when it cannot be told).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from)
}

impl Runners {
    /// Starts the runners (the Python pool is started here, see [`python::Warmth`]).
    pub async fn start(
        settings: &RunnerSettings,
        warmth: python::Warmth,
    ) -> Result<Runners, GeneratorError> {
        Ok(Runners {
            python: python::PythonRunner::start(settings, warmth).await?,
            exec: exec::ExecRunner::new(settings),
        })
    }

    /// The Python runner (for `check`'s batches).
    pub fn python(&self) -> &python::PythonRunner {
        &self.python
    }

    /// The runner of executables (for stdout as bytes, see `encode::run_serve`).
    pub fn exec(&self) -> &exec::ExecRunner {
        &self.exec
    }

    /// Runs one dynamic generator and returns its raw output.
    pub async fn run(
        &self,
        generator: &GeneratorFile,
        params: &Params,
        mode: RunMode,
    ) -> Result<serde_json::Value, GeneratorError> {
        match generator.kind {
            GeneratorKind::Python => self.python.run(generator, params, mode).await,
            GeneratorKind::Executable => self.exec.run(generator, params, mode).await,
            GeneratorKind::Json | GeneratorKind::Yaml => Err(GeneratorError::new(
                crate::error::ErrorKind::Internal,
                format!(
                    "{} is a static file, not a runnable generator",
                    generator.rel
                ),
            )),
        }
    }

    /// Stops worker processes (called on shutdown).
    pub async fn shutdown(&self) {
        self.python.shutdown().await;
    }
}
