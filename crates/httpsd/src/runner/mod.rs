//! Runs dynamic generators (Python scripts and executables) and returns their raw
//! JSON output. Validation, caching and merging happen above this layer.

pub mod exec;
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

/// Settings for the runners (built from the command line by `cli::runner`).
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
            GeneratorKind::Json | GeneratorKind::Yaml | GeneratorKind::Prom => {
                Err(GeneratorError::new(
                    crate::error::ErrorKind::Internal,
                    format!(
                        "{} is a static file, not a runnable generator",
                        generator.rel
                    ),
                ))
            }
        }
    }

    /// Stops worker processes (called on shutdown).
    pub async fn shutdown(&self) {
        self.python.shutdown().await;
    }
}
