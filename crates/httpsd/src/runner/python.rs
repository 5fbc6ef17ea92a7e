//! Python generators on the `python-pool` crate's supervised worker pool: this module
//! maps httpsd's settings, generators and run modes to the pool's calls, and the
//! pool's errors to [`GeneratorError`]s with httpsd's messages. How the workers run,
//! fail and are replaced is the crate's (see its docs).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use python_pool::{
    BatchEvent, BatchItem, Call, Entry, Import, Pool, PoolError, PoolSettings, RawResult,
};
use tokio::sync::mpsc;

use super::{RunMode, RunnerSettings};
use crate::error::{ErrorKind, GeneratorError};
use crate::params::Params;
use crate::tree::GeneratorFile;

pub use python_pool::Warmth;

/// The environment variable the original sets in check mode.
const TEST_ENV: &str = "PROMETHEUS_HTTP_SD_IS_TEST";

/// How long a shutdown waits for workers to come back from their calls and for what
/// they printed to be logged.
pub(crate) const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// The original's package, provided to generators that import it when it is not
/// installed (an installed package always wins).
const SHIMS: [(&str, &str); 3] = [
    ("prometheus_http_sd", ""),
    (
        "prometheus_http_sd.const",
        "TEST_ENV_NAME = \"PROMETHEUS_HTTP_SD_IS_TEST\"\n",
    ),
    (
        "prometheus_http_sd.targets",
        "from typing import Dict, List, TypedDict\n\
         class Target(TypedDict):\n    targets: List[str]\n    labels: Dict[str, str]\n\
         TargetList = List[Target]\n",
    ),
];

/// The default pool size: twice the cores (generators mostly wait on the network),
/// between 4 and 32.
pub fn default_workers() -> usize {
    (super::cores() * 2).clamp(4, 32)
}

/// httpsd's cache directory (`$XDG_CACHE_HOME/httpsd`, else `~/.cache/httpsd`), where
/// the workers keep the runner's compiled code.
fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|home| home.join(".cache"))
        })
        .map(|base| base.join("httpsd"))
}

/// Generator output, logged under the `httpsd::python` target with the generator.
struct GeneratorOutput;

impl python_pool::OutputSink for GeneratorOutput {
    fn line(&self, pid: i32, name: &str, text: &str) {
        if name.is_empty() {
            tracing::info!(target: "httpsd::python", pid, "{text}");
        } else {
            tracing::info!(target: "httpsd::python", generator = %name, pid, "{text}");
        }
    }

    fn suppressed(&self, pid: i32, name: &str, bytes: usize) {
        tracing::warn!(
            generator = %name,
            pid,
            "generator printed {bytes} more bytes of output that were not logged"
        );
    }
}

/// The pool settings of httpsd's Python workers (interpreter, root, limits, the
/// original's shims, output to our log), shared by generators and exporters.
pub fn pool_settings(settings: &RunnerSettings) -> PoolSettings {
    PoolSettings {
        python: settings.python.clone(),
        python_option: "--python".into(),
        root: settings.root.clone(),
        workers: settings.python_workers,
        max_run_time: settings.max_run_time,
        memory_limit: settings.python_memory_limit,
        code_cache: cache_dir(),
        env_remove: vec![TEST_ENV.into()],
        shims: SHIMS
            .iter()
            .map(|(name, source)| (name.to_string(), source.to_string()))
            .collect(),
        name: "httpsd".into(),
        output: Arc::new(GeneratorOutput),
    }
}

/// Runs `.py` generators on a pool of Python workers.
pub struct PythonRunner {
    pool: Pool,
    /// `generate_targets(**params)`, the module kept while unchanged.
    serve: Arc<Entry>,
    /// Check mode: a fresh module with the test variable set, `test_generate_targets()`
    /// when defined.
    check: Arc<Entry>,
}

impl PythonRunner {
    /// Starts the pool (see [`Warmth`]); fails with a clear message when the
    /// interpreter is missing or broken.
    pub async fn start(
        settings: &RunnerSettings,
        warmth: Warmth,
    ) -> Result<PythonRunner, GeneratorError> {
        if settings.python_workers == 0 {
            tracing::info!("Python generators disabled (--python-workers 0)");
        }
        let pool_settings = pool_settings(settings);
        let pool = Pool::start(pool_settings, warmth)
            .await
            .map_err(|e| GeneratorError::new(ErrorKind::Internal, e.message))?;
        Ok(PythonRunner {
            pool,
            serve: Arc::new(Entry::new("generate_targets", Import::Cached)),
            check: Arc::new(Entry {
                functions: vec!["test_generate_targets".into(), "generate_targets".into()],
                import: Import::Fresh,
                env: vec![(TEST_ENV.into(), "1".into())],
                host: None,
            }),
        })
    }

    /// Runs many generators in check mode, as batches spread over the workers, and
    /// reports each one's start and result on the returned channel.
    ///
    /// Each file still has its own `--max-run-time`: a file past it fails alone, its
    /// worker is killed, and the rest of its batch runs elsewhere; the same holds for
    /// a file that crashes its worker.
    pub fn check_many(&self, items: Vec<(usize, GeneratorFile)>) -> CheckEvents {
        let items = items
            .into_iter()
            .map(|(index, g)| BatchItem {
                index,
                module: g.abs.to_string_lossy().into_owned(),
                name: g.rel,
            })
            .collect();
        CheckEvents(self.pool.run_batch(items, self.check.clone()))
    }

    /// Runs one generator on a free worker and returns its JSON result as a tree.
    pub async fn run(
        &self,
        generator: &GeneratorFile,
        params: &Params,
        mode: RunMode,
    ) -> Result<serde_json::Value, GeneratorError> {
        let raw = self.run_raw(generator, params, mode).await?;
        self.parse(generator, &raw)
    }

    /// Runs one generator on a free worker and returns its JSON result as the worker
    /// wrote it (for the one-pass encoder: a big result never becomes a tree).
    ///
    /// The call runs in its own task, so a caller that gives up (a client that
    /// disconnects) never leaves a worker half-way through a call.
    pub async fn run_raw(
        &self,
        generator: &GeneratorFile,
        params: &Params,
        mode: RunMode,
    ) -> Result<RawResult, GeneratorError> {
        let rel = &generator.rel;
        let (entry, params) = match mode {
            RunMode::Serve => (&self.serve, params.pairs().to_vec()),
            RunMode::Check => (&self.check, Vec::new()),
        };
        let call = Call {
            module: generator.abs.to_string_lossy().into_owned(),
            name: rel.clone(),
            entry: entry.clone(),
            params,
            deadline: None,
        };
        let result = self.pool.call_raw(call).await.map_err(generator_error);
        if let Err(GeneratorError {
            kind,
            message,
            traceback: Some(tb),
        }) = &result
        {
            tracing::warn!(generator = %rel, ?kind, traceback = %tb.trim_end(), "{message}");
        }
        result
    }

    /// A result from [`PythonRunner::run_raw`] as a tree.
    pub fn parse(
        &self,
        generator: &GeneratorFile,
        raw: &RawResult,
    ) -> Result<serde_json::Value, GeneratorError> {
        python_pool::parse_result(&generator.rel, raw).map_err(generator_error)
    }

    /// Kills every worker (and its process group), after waiting up to
    /// [`OUTPUT_GRACE`] for busy ones and logging what they printed (see
    /// [`python_pool::Pool::close`]).
    pub async fn shutdown(&self) {
        self.pool.close(OUTPUT_GRACE).await;
    }
}

/// Progress of [`PythonRunner::check_many`].
#[derive(Debug)]
pub enum CheckEvent {
    /// The generator with this index started running.
    Started(usize),
    /// It finished: its raw result and its run time.
    Done(usize, Result<serde_json::Value, GeneratorError>, Duration),
}

/// The events of one [`PythonRunner::check_many`].
pub struct CheckEvents(mpsc::UnboundedReceiver<BatchEvent>);

impl CheckEvents {
    /// The next event (`None` once every generator is done).
    pub async fn recv(&mut self) -> Option<CheckEvent> {
        Some(match self.0.recv().await? {
            BatchEvent::Started(index) => CheckEvent::Started(index),
            BatchEvent::Done(index, result, took) => {
                CheckEvent::Done(index, result.map_err(generator_error), took)
            }
        })
    }
}

/// The pool's error as httpsd's, with httpsd's words for its options.
pub fn generator_error(e: PoolError) -> GeneratorError {
    let traceback = e.traceback();
    let (kind, message) = match &e {
        PoolError::Exception { .. } => (ErrorKind::Exception, e.to_string()),
        PoolError::Timeout { name, limit } => (
            ErrorKind::Timeout,
            format!(
                "{name}: still running after {}s (--max-run-time); its Python worker was killed",
                limit.as_secs_f64()
            ),
        ),
        PoolError::Busy { .. } => (ErrorKind::Timeout, e.to_string()),
        PoolError::Died { .. } => (ErrorKind::WorkerDied, e.to_string()),
        PoolError::Disabled { name } => (
            ErrorKind::Unsupported,
            format!("{name}: Python generators are disabled (--python-workers 0)"),
        ),
        _ => (ErrorKind::Internal, e.to_string()),
    };
    let error = GeneratorError::new(kind, message);
    match traceback {
        Some(tb) => error.with_traceback(tb),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(root: &std::path::Path) -> RunnerSettings {
        RunnerSettings {
            root: root.to_path_buf(),
            max_run_time: Duration::from_secs(10),
            python: "python3".into(),
            python_workers: 1,
            python_memory_limit: 0,
        }
    }

    /// Check mode (used by `httpsd check`): the test variable is visible at import
    /// and call time, `test_generate_targets()` wins when defined, no parameters.
    #[tokio::test]
    async fn check_mode_uses_test_generate_targets() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(
            root.join("with_test.py"),
            "import os\nAT_IMPORT = os.environ.get('PROMETHEUS_HTTP_SD_IS_TEST', 'unset')\n\
             def generate_targets(**p):\n    return [{'targets': ['serve:1'], 'labels': {'import': AT_IMPORT, 'params': ','.join(p)}}]\n\
             def test_generate_targets():\n    return [{'targets': ['test:1'], 'labels': {'import': AT_IMPORT, 'call': os.environ.get('PROMETHEUS_HTTP_SD_IS_TEST', 'unset')}}]\n",
        )
        .unwrap();
        std::fs::write(
            root.join("without_test.py"),
            "def generate_targets(**p):\n    return [{'targets': ['plain:1'], 'labels': {'params': ','.join(p)}}]\n",
        )
        .unwrap();
        let listing = crate::tree::scan(&root);
        let find = |name: &str| {
            listing
                .generators
                .iter()
                .find(|g| g.rel == name)
                .cloned()
                .expect("generator found")
        };
        let runner = PythonRunner::start(&settings(&root), Warmth::Warm)
            .await
            .expect("pool starts");
        let params = Params::from_pairs([("x", "1")]);
        let with_test = find("with_test.py");
        let without_test = find("without_test.py");

        let serve = runner
            .run(&with_test, &params, RunMode::Serve)
            .await
            .unwrap();
        assert_eq!(
            serve,
            serde_json::json!([{"targets": ["serve:1"], "labels": {"import": "unset", "params": "x"}}])
        );
        let check = runner
            .run(&with_test, &params, RunMode::Check)
            .await
            .unwrap();
        assert_eq!(
            check,
            serde_json::json!([{"targets": ["test:1"], "labels": {"import": "1", "call": "1"}}])
        );
        let check = runner
            .run(&without_test, &params, RunMode::Check)
            .await
            .unwrap();
        assert_eq!(
            check,
            serde_json::json!([{"targets": ["plain:1"], "labels": {"params": ""}}])
        );
        // Serving afterwards sees neither the variable nor a check-mode module.
        let serve = runner
            .run(&with_test, &params, RunMode::Serve)
            .await
            .unwrap();
        assert_eq!(serve[0]["labels"]["import"], "unset");
        runner.shutdown().await;
    }
}
