//! `.py` exporters on Python workers with module affinity: each exporter module has a
//! worker of its own ([`python_pool::Dedicated`]) and is imported once and kept
//! ([`Import::Kept`]), so its module-level state (a Histogram of probe latencies, a
//! Counter of failures) accumulates across scrapes and every scrape sees the same
//! state. The host script (`host.py`, embedded) calls `collect(**params)` or the
//! collectors the module registered, and returns OpenMetrics text.

use std::sync::Arc;

use python_pool::{Call, Dedicated, Entry, Import};

use crate::error::{ErrorKind, GeneratorError};
use crate::params::Params;
use crate::runner::RunnerSettings;
use crate::runner::python::{generator_error, pool_settings};
use crate::tree::GeneratorFile;

/// The module name the host script is provided as.
const HOST_MODULE: &str = "_httpsd_exporter";

/// The host script.
const HOST_SOURCE: &str = include_str!("host.py");

/// Runs `.py` exporters, one worker per module.
pub struct PythonExporters {
    pools: Dedicated,
    entry: Arc<Entry>,
}

impl PythonExporters {
    /// No worker yet: each module's starts on its first scrape.
    pub fn new(settings: &RunnerSettings) -> PythonExporters {
        let mut pool = pool_settings(settings);
        pool.shims
            .push((HOST_MODULE.to_string(), HOST_SOURCE.to_string()));
        PythonExporters {
            pools: Dedicated::new(pool),
            entry: Arc::new(Entry {
                host: Some(format!("{HOST_MODULE}:host")),
                ..Entry::new("collect", Import::Kept)
            }),
        }
    }

    /// Runs one exporter; returns its OpenMetrics text (the host returns it as a JSON string).
    pub async fn run(
        &self,
        file: &GeneratorFile,
        params: &Params,
    ) -> Result<String, GeneratorError> {
        let call = Call {
            module: file.abs.to_string_lossy().into_owned(),
            name: file.rel.clone(),
            entry: self.entry.clone(),
            params: params.pairs().to_vec(),
            deadline: None,
        };
        let value = self.pools.call(call).await.map_err(|e| {
            let e = generator_error(e);
            if let Some(tb) = &e.traceback {
                tracing::warn!(exporter = %file.rel, traceback = %tb.trim_end(), "{}", e.message);
            }
            e
        })?;
        match value {
            serde_json::Value::String(text) => Ok(text),
            other => Err(GeneratorError::new(
                ErrorKind::Internal,
                format!(
                    "{}: the host returned no text but {}",
                    file.rel,
                    other.to_string().chars().take(80).collect::<String>()
                ),
            )),
        }
    }

    /// Starts the worker of `module` (an absolute path) unless it has one.
    pub async fn warm(&self, module: &str) {
        self.pools.warm(module).await;
    }

    /// The modules that have a worker.
    pub fn modules(&self) -> Vec<String> {
        self.pools.modules()
    }

    /// Stops the workers of modules that are no longer exporters.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.pools.retain(keep);
    }

    /// Kills every worker.
    pub fn shutdown(&self) {
        self.pools.shutdown();
    }

    /// Kills every worker, after waiting up to the runner's output grace for busy ones
    /// and logging what they printed.
    pub async fn close(&self) {
        self.pools.close(crate::runner::python::OUTPUT_GRACE).await;
    }
}
