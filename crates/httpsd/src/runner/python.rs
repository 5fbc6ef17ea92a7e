//! Python generators (placeholder until the worker pool lands).

use super::{RunMode, RunnerSettings};
use crate::error::{ErrorKind, GeneratorError};
use crate::params::Params;
use crate::tree::GeneratorFile;

/// Runs `.py` generators.
pub struct PythonRunner;

impl PythonRunner {
    /// Starts the runner.
    pub async fn start(_settings: &RunnerSettings) -> Result<PythonRunner, GeneratorError> {
        Ok(PythonRunner)
    }

    /// Runs one generator.
    pub async fn run(
        &self,
        generator: &GeneratorFile,
        _params: &Params,
        _mode: RunMode,
    ) -> Result<serde_json::Value, GeneratorError> {
        Err(GeneratorError::new(
            ErrorKind::Unsupported,
            format!("{}: Python generators are not supported yet", generator.rel),
        ))
    }

    /// Stops the pool.
    pub async fn shutdown(&self) {}
}
