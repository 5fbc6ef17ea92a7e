//! What a pool is started with: [`PoolSettings`] and [`Warmth`], and the fixed
//! configuration its workers are started from.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::output::{LogOutput, OutputSink};

/// Settings of a pool.
#[derive(Clone)]
pub struct PoolSettings {
    /// The Python interpreter (e.g. a virtualenv's `bin/python`).
    pub python: PathBuf,
    /// How the program's users set `python` (e.g. `--python`), quoted in start errors.
    pub python_option: String,
    /// The code's directory: appended to `sys.path`; modules imported from under it
    /// are read again when edited ([`crate::Import::Cached`]).
    pub root: PathBuf,
    /// Number of worker processes (0: a pool whose calls fail with
    /// [`crate::PoolError::Disabled`]).
    pub workers: usize,
    /// Deadline of a call that sets none; start-ups get this, between 5 and 30 s.
    pub max_run_time: Duration,
    /// Address-space limit of each worker in bytes (0: none): past it, Python raises
    /// `MemoryError` and the worker is replaced after the call.
    pub memory_limit: u64,
    /// Where the runner's compiled code is kept between runs (`None`: compiled by
    /// every worker).
    pub code_cache: Option<PathBuf>,
    /// Environment variables removed from the workers' environment.
    pub env_remove: Vec<String>,
    /// Modules provided, by source, when no installed package provides them (module
    /// name, source).
    pub shims: Vec<(String, String)>,
    /// The program's name: the workers' `sys.argv[0]`, and their runner's file name
    /// (`<NAME-runner>`, on their command line, so `ps` tells whose they are).
    pub name: String,
    /// Where the workers' output goes (see [`OutputSink`]).
    pub output: Arc<dyn OutputSink>,
}

impl PoolSettings {
    /// Settings with defaults: `python3`, 4 workers, a 120 s deadline, no memory limit,
    /// no code cache, output logged by [`LogOutput`].
    pub fn new(root: impl Into<PathBuf>) -> PoolSettings {
        PoolSettings {
            python: "python3".into(),
            python_option: "python".into(),
            root: root.into(),
            workers: 4,
            max_run_time: Duration::from_secs(120),
            memory_limit: 0,
            code_cache: None,
            env_remove: Vec::new(),
            shims: Vec::new(),
            name: "python-pool".into(),
            output: Arc::new(LogOutput),
        }
    }
}

/// How the pool starts (see [`crate::Pool::start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmth {
    /// Every worker starts now.
    Warm,
    /// Workers start on the first calls that need them.
    Lazy,
    /// Like `Warm`, but one interpreter starts and forks the other workers once it has
    /// loaded the runner (a fraction of an interpreter's start-up each), and the
    /// workers' output is polled rather than waited on (see `polled_pipe`). For pools
    /// that live as long as one command and run many short calls in batches: the
    /// copies are the first worker's children, so their exit status is only known
    /// while it lives, and the process becomes a child subreaper.
    Forked,
}

/// The fixed settings workers are started from.
#[derive(Clone)]
pub(crate) struct PoolConfig {
    pub python: PathBuf,
    pub python_option: String,
    pub root: PathBuf,
    pub max_run_time: Duration,
    pub startup_timeout: Duration,
    pub memory_limit: u64,
    pub code_cache: String,
    pub env_remove: Vec<String>,
    /// Module name to source (see [`PoolSettings::shims`]).
    pub shims: serde_json::Map<String, serde_json::Value>,
    pub name: String,
    /// `python -c` code of the workers (see `boot`).
    pub boot: String,
    pub output: Arc<dyn OutputSink>,
    /// Workers' output is polled rather than waited on (see `polled_pipe`).
    pub polled: bool,
}

impl PoolConfig {
    pub fn new(settings: PoolSettings, warmth: Warmth) -> PoolConfig {
        PoolConfig {
            startup_timeout: settings
                .max_run_time
                .clamp(Duration::from_secs(5), Duration::from_secs(30)),
            // The boot code reads it as one line: a path with a newline is no cache.
            code_cache: settings
                .code_cache
                .filter(|p| p.is_absolute())
                .map(|p| p.to_string_lossy().into_owned())
                .filter(|p| !p.contains('\n'))
                .unwrap_or_default(),
            shims: settings
                .shims
                .into_iter()
                .map(|(name, source)| (name, serde_json::Value::String(source)))
                .collect(),
            python: settings.python,
            python_option: settings.python_option,
            root: settings.root,
            max_run_time: settings.max_run_time,
            memory_limit: settings.memory_limit,
            env_remove: settings.env_remove,
            boot: crate::boot::boot_code(&settings.name),
            name: settings.name,
            output: settings.output,
            polled: warmth == Warmth::Forked,
        }
    }
}
