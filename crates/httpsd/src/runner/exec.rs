//! Executable generators (placeholder until the runner lands).

use super::{RunMode, RunnerSettings};
use crate::error::{ErrorKind, GeneratorError};
use crate::params::Params;
use crate::tree::GeneratorFile;

/// Runs executable generators.
pub struct ExecRunner;

impl ExecRunner {
    /// A new runner.
    pub fn new(_settings: &RunnerSettings) -> ExecRunner {
        ExecRunner
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
            format!(
                "{}: executable generators are not supported yet",
                generator.rel
            ),
        ))
    }
}
