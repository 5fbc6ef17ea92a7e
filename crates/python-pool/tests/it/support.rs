//! A tree of modules in a temporary directory, a pool over it, and an output sink
//! that records what the workers printed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use python_pool::{Call, Entry, Import, OutputSink, Pool, PoolSettings, Warmth};

/// Fails loudly when `python3` is missing: these tests need a real interpreter.
pub fn require_python() {
    let ok = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sys; assert sys.version_info >= (3, 8)")
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "python3 (3.8 or later) is required by these tests");
}

/// Polls `done` every 20 ms for up to 20 s; whether it became true.
pub async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Records every line of output with the call it is attributed to.
#[derive(Default)]
pub struct Recorder {
    /// (call name, text), in order.
    pub lines: Mutex<Vec<(String, String)>>,
}

impl OutputSink for Recorder {
    fn line(&self, _pid: i32, name: &str, text: &str) {
        let mut lines = self.lines.lock().unwrap();
        lines.push((name.to_string(), text.to_string()));
    }

    fn suppressed(&self, _pid: i32, _name: &str, _bytes: usize) {}
}

impl Recorder {
    /// The lines attributed to `name`.
    pub fn of(&self, name: &str) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .collect()
    }
}

/// A directory of modules.
pub struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        require_python();
        Tree {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// The root (canonical, as the runner compares paths under it).
    pub fn root(&self) -> PathBuf {
        self.dir.path().canonicalize().expect("root")
    }

    /// Writes a module; returns its absolute path.
    pub fn write(&self, name: &str, source: &str) -> String {
        let path = self.root().join(name);
        std::fs::write(&path, source).expect("write a module");
        path.to_string_lossy().into_owned()
    }

    /// Settings for a pool over this tree.
    pub fn settings(&self, workers: usize, output: Arc<Recorder>) -> PoolSettings {
        let mut s = PoolSettings::new(self.root());
        s.workers = workers;
        s.max_run_time = Duration::from_secs(20);
        s.output = output;
        s
    }

    /// A started pool of `workers` workers.
    pub async fn pool(&self, workers: usize) -> (Pool, Arc<Recorder>) {
        let out = Arc::new(Recorder::default());
        let pool = Pool::start(self.settings(workers, out.clone()), Warmth::Warm)
            .await
            .expect("the pool starts");
        (pool, out)
    }
}

/// A call of `function` in `module` (named after the file).
pub fn call(module: &str, function: &str, import: Import) -> Call {
    Call {
        module: module.to_string(),
        name: Path::new(module)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        entry: Arc::new(Entry::new(function, import)),
        params: Vec::new(),
        deadline: None,
    }
}

/// The pid of the worker that answers (a module that returns `os.getpid()`).
pub async fn worker_pid(pool: &Pool, tree: &Tree) -> i64 {
    let m = tree.write(
        "pid_of.py",
        "import os\ndef pid():\n    return os.getpid()\n",
    );
    let v = pool
        .call(call(&m, "pid", Import::Cached))
        .await
        .expect("pid");
    v.as_i64().expect("a pid")
}
