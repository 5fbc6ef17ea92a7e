//! `--collector PATH`: custom Python collectors served with the multiprocess families,
//! what `prometheus_client`'s multiprocess mode cannot do.
//!
//! Each collector file runs in its own supervised Python worker (a python-pool of one,
//! started with `--python`), which keeps `host.py` (beside this file) and, through it, the
//! collector module for the worker's life. A collector either registers collectors on
//! `prometheus_client.REGISTRY` at import or defines a module-level `collect()`; the worker
//! answers with the OpenMetrics text of their families, written by prometheus_client's own
//! encoder, and [`slot`] parses and validates it with the exposition crate. Failures
//! (raise, hang past the timeout, a dead interpreter, bad output) leave that collector's
//! families out; the caller reports them. A directory is listed again on every collection,
//! so added and removed files are noticed; an edited file gets a new worker.

pub mod slot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use slot::{Outcome, Slot, SlotConfig};

/// The host module the workers keep.
const HOST_PY: &str = include_str!("host.py");

/// Why the collectors could not start.
#[derive(Debug, thiserror::Error)]
pub enum CollectorsError {
    /// A `--collector` path is neither a `.py` file nor a directory.
    #[error("--collector {0}: not a .py file or a directory")]
    NotPython(PathBuf),
    /// A `--collector` path cannot be read.
    #[error("--collector {path}: {error}")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Two collector files have the same name (the `collector` label would not tell them apart).
    #[error("two collectors are named {0}; rename one")]
    SameName(String),
    /// The host module could not be written.
    #[error("cannot write the collector host module {path}: {error}")]
    Host {
        /// Where.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A worker could not start (`--python` missing or without prometheus_client).
    #[error("collector {name}: {error}")]
    Start {
        /// The collector.
        name: String,
        /// Why.
        error: python_pool::StartError,
    },
}

/// Settings of the collectors.
#[derive(Debug, Clone)]
pub struct CollectorSettings {
    /// `.py` files and directories of them.
    pub paths: Vec<PathBuf>,
    /// The Python interpreter (the application's virtualenv).
    pub python: PathBuf,
    /// The deadline of one collection.
    pub timeout: Duration,
    /// How long a result is reused (0: every scrape collects).
    pub cache: Duration,
}

/// The collector files of `paths` in order: files as given, then each directory's
/// `*.py` files by name (names starting with `_` or `.` are ignored).
pub fn list_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CollectorsError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|error| CollectorsError::Unreadable {
            path: p.clone(),
            error,
        })?;
        if meta.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|error| CollectorsError::Unreadable {
                path: p.clone(),
                error,
            })?;
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|f| is_collector_name(f) && f.is_file())
                .collect();
            files.sort();
            out.extend(files);
        } else if p.extension().is_some_and(|e| e == "py") {
            out.push(p.clone());
        } else {
            return Err(CollectorsError::NotPython(p.clone()));
        }
    }
    Ok(out)
}

/// Removes the host directories of earlier runs whose process is gone (one killed with
/// SIGKILL never removed its own).
fn remove_stale_host_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("multiproc-exporter-"))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if crate::liveness::pid_state(pid) == crate::liveness::PidState::Dead
            && e.path().join("collector_host.py").is_file()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn is_collector_name(f: &Path) -> bool {
    f.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".py") && !n.starts_with('_') && !n.starts_with('.'))
}

fn name_of(f: &Path) -> String {
    f.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What one collector gave in one collection.
#[derive(Debug, Clone)]
pub struct CollectorResult {
    /// The collector's name (its file name).
    pub name: String,
    /// Its outcome.
    pub outcome: Arc<Outcome>,
}

/// Every collector of the program.
pub struct Collectors {
    settings: CollectorSettings,
    config: Arc<SlotConfig>,
    /// Where `host.py` was written (removed at shutdown).
    host_dir: PathBuf,
    /// By file, in listing order.
    slots: Mutex<Vec<(PathBuf, Arc<Slot>)>>,
}

impl Collectors {
    /// Writes the host module, lists the files and starts a worker per file; fails when a
    /// path is wrong or a worker cannot start (e.g. `--python` has no prometheus_client).
    pub async fn start(settings: CollectorSettings) -> Result<Collectors, CollectorsError> {
        let files = list_files(&settings.paths)?;
        remove_stale_host_dirs();
        let host_dir =
            std::env::temp_dir().join(format!("multiproc-exporter-{}", std::process::id()));
        let host = host_dir.join("collector_host.py");
        std::fs::create_dir_all(&host_dir)
            .and_then(|_| std::fs::write(&host, HOST_PY))
            .map_err(|error| CollectorsError::Host {
                path: host.clone(),
                error,
            })?;
        let config = Arc::new(SlotConfig {
            python: settings.python.clone(),
            host,
            timeout: settings.timeout,
            cache: settings.cache,
        });
        let c = Collectors {
            settings,
            config,
            host_dir,
            slots: Mutex::new(Vec::new()),
        };
        let slots = c.slots_for(&files)?;
        for s in &slots {
            s.start().await.map_err(|error| CollectorsError::Start {
                name: s.name.clone(),
                error,
            })?;
        }
        tracing::info!(collectors = slots.len(), "collectors ready");
        Ok(c)
    }

    /// The slots of `files`: kept ones reused, new ones created (their worker starts on
    /// their first collection), gone ones shut down.
    fn slots_for(&self, files: &[PathBuf]) -> Result<Vec<Arc<Slot>>, CollectorsError> {
        let mut names = BTreeMap::new();
        for f in files {
            if names.insert(name_of(f), ()).is_some() {
                return Err(CollectorsError::SameName(name_of(f)));
            }
        }
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = Vec::with_capacity(files.len());
        for f in files {
            let slot = match slots.iter().find(|(p, _)| p == f) {
                Some((_, s)) => s.clone(),
                None => Arc::new(Slot::new(name_of(f), f.clone(), self.config.clone())),
            };
            next.push((f.clone(), slot));
        }
        for (p, s) in slots.iter() {
            if !files.contains(p) {
                tracing::info!(collector = %s.name, "collector file gone: its worker is stopped");
                s.shutdown();
            }
        }
        *slots = next;
        Ok(slots.iter().map(|(_, s)| s.clone()).collect())
    }

    /// Collects every collector concurrently (each bounded by the timeout), in file order.
    pub async fn collect(&self) -> Vec<CollectorResult> {
        // Listed again each time: a file added to a collector directory is picked up.
        let slots = match list_files(&self.settings.paths).and_then(|f| self.slots_for(&f)) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("collectors not listed again, using the last list: {e}");
                let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                slots.iter().map(|(_, s)| s.clone()).collect()
            }
        };
        let outcomes = futures::future::join_all(slots.iter().map(|s| s.get())).await;
        slots
            .iter()
            .zip(outcomes)
            .map(|(s, outcome)| CollectorResult {
                name: s.name.clone(),
                outcome,
            })
            .collect()
    }

    /// Kills every worker and removes the host module.
    pub fn shutdown(&self) {
        for (_, s) in self.slots.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            s.shutdown();
        }
        let _ = std::fs::remove_dir_all(&self.host_dir);
    }
}
