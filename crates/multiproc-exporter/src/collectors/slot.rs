//! One collector file: its Python worker (a python-pool of one, restarted when the file
//! changes), its single-flight collection and its cache.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use exposition::{Escaping, Format, MetricFamily};
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use python_pool::{Call, Entry, Import, Pool, PoolSettings, Warmth};

/// What one collection of a collector gave.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Its families, parsed and validated.
    Families(Vec<MetricFamily>),
    /// Why there are none: a one-line message, and the traceback or output when known.
    Failed {
        /// One line.
        message: String,
        /// Python's traceback, or the worker's last output.
        detail: Option<String>,
    },
}

/// How a collector's worker is started and called.
#[derive(Debug, Clone)]
pub struct SlotConfig {
    /// The Python interpreter.
    pub python: PathBuf,
    /// The host module's file (see `host.py`).
    pub host: PathBuf,
    /// The deadline of one collection.
    pub timeout: Duration,
    /// How long a result is reused.
    pub cache: Duration,
}

/// `(mtime, size, inode)` of the file: a change starts a new worker.
type Stamp = (Option<std::time::SystemTime>, u64, u64);

fn stamp(path: &std::path::Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path)?;
    Ok((m.modified().ok(), m.len(), m.ino()))
}

type Pending = Shared<BoxFuture<'static, Arc<Outcome>>>;

#[derive(Default)]
struct CacheState {
    last: Option<(Instant, Arc<Outcome>)>,
    inflight: Option<Pending>,
}

/// One collector file.
pub struct Slot {
    /// Its name in metrics and logs (the file name).
    pub name: String,
    file: PathBuf,
    config: Arc<SlotConfig>,
    entry: Arc<Entry>,
    pool: tokio::sync::Mutex<Option<(Pool, Stamp)>>,
    cache: Mutex<CacheState>,
    /// The last failure logged (logged again only when it changes).
    last_error: Mutex<Option<String>>,
}

impl Slot {
    /// A collector for `file` (no worker yet).
    pub fn new(name: String, file: PathBuf, config: Arc<SlotConfig>) -> Slot {
        Slot {
            name,
            file,
            config,
            entry: Arc::new(Entry::new("collect", Import::Kept)),
            pool: tokio::sync::Mutex::new(None),
            cache: Mutex::new(CacheState::default()),
            last_error: Mutex::new(None),
        }
    }

    fn pool_settings(&self) -> PoolSettings {
        let mut s = PoolSettings::new(
            self.file
                .parent()
                .map(|p| p.to_path_buf())
                .unwrap_or_default(),
        );
        s.python = self.config.python.clone();
        s.python_option = "--python".into();
        s.workers = 1;
        s.max_run_time = self.config.timeout;
        // The collector's own metrics must not write .db files into the directory we serve.
        s.env_remove = vec![
            "PROMETHEUS_MULTIPROC_DIR".into(),
            "prometheus_multiproc_dir".into(),
        ];
        s.name = "multiproc-exporter".into();
        s
    }

    /// Starts the worker now (start-up proves `--python` works).
    pub async fn start(&self) -> Result<(), python_pool::StartError> {
        let st = stamp(&self.file).ok().unwrap_or_default();
        let pool = Pool::start(self.pool_settings(), Warmth::Warm).await?;
        *self.pool.lock().await = Some((pool, st));
        Ok(())
    }

    /// Kills the worker (after the collection that holds it, if one runs).
    pub fn shutdown(self: &Arc<Self>) {
        match self.pool.try_lock() {
            Ok(p) => {
                if let Some((pool, _)) = p.as_ref() {
                    pool.shutdown();
                }
            }
            Err(_) => {
                // A collection holds the pool: kill it once that ends. (At exit the
                // workers die with us anyway: the pool sets their parent-death signal.)
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    let me = self.clone();
                    rt.spawn(async move {
                        if let Some((pool, _)) = me.pool.lock().await.as_ref() {
                            pool.shutdown();
                        }
                    });
                }
            }
        }
    }

    /// One collection in the worker: a new worker first when the file changed.
    async fn run(&self) -> Outcome {
        let st = match stamp(&self.file) {
            Ok(s) => s,
            Err(e) => {
                return Outcome::Failed {
                    message: format!("cannot read {}: {e}", self.file.display()),
                    detail: None,
                };
            }
        };
        let mut guard = self.pool.lock().await;
        if guard.as_ref().is_none_or(|(_, old)| *old != st) {
            if let Some((old, _)) = guard.take() {
                tracing::info!(collector = %self.name, "collector file changed: starting a new worker");
                old.shutdown();
            }
            match Pool::start(self.pool_settings(), Warmth::Warm).await {
                Ok(p) => *guard = Some((p, st)),
                Err(e) => {
                    return Outcome::Failed {
                        message: format!("cannot start its Python worker: {e}"),
                        detail: None,
                    };
                }
            }
        }
        let Some((pool, _)) = guard.as_ref() else {
            unreachable!("the pool was just set")
        };
        let call = Call {
            module: self.config.host.to_string_lossy().into_owned(),
            name: self.name.clone(),
            entry: self.entry.clone(),
            params: vec![("path".into(), self.file.to_string_lossy().into_owned())],
            deadline: Some(self.config.timeout),
        };
        match pool.call(call).await {
            Ok(serde_json::Value::String(text)) => {
                match exposition::parse(&text, Format::OpenMetrics(Escaping::Underscores)) {
                    Ok(f) => Outcome::Families(f),
                    Err(e) => Outcome::Failed {
                        message: format!(
                            "{}: invalid exposition from the collector: {e}",
                            self.name
                        ),
                        detail: Some(text.lines().take(20).collect::<Vec<_>>().join("\n")),
                    },
                }
            }
            Ok(other) => Outcome::Failed {
                message: format!("{}: the host returned {other:.80}, not text", self.name),
                detail: None,
            },
            Err(e) => Outcome::Failed {
                message: e.to_string(),
                detail: e.traceback(),
            },
        }
    }

    /// The families to serve now: a cached result while fresh; else a collection shared
    /// with every concurrent caller. With a cache, an expired result is served while a
    /// new one is collected in the background. Never waits past the timeout.
    pub async fn get(self: &Arc<Self>) -> Arc<Outcome> {
        let cache_for = self.config.cache;
        let (pending, stale) = {
            let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, o)) = &c.last
                && at.elapsed() < cache_for
            {
                return o.clone();
            }
            let pending = match &c.inflight {
                Some(p) => p.clone(),
                None => {
                    let p = self.clone().spawn_collection();
                    c.inflight = Some(p.clone());
                    p
                }
            };
            let stale = (!cache_for.is_zero())
                .then(|| c.last.as_ref().map(|(_, o)| o.clone()))
                .flatten();
            (pending, stale)
        };
        if let Some(s) = stale {
            return s;
        }
        match tokio::time::timeout(self.config.timeout, pending).await {
            Ok(o) => o,
            Err(_) => Arc::new(Outcome::Failed {
                message: format!(
                    "{}: no result within --collector-timeout ({}s)",
                    self.name,
                    self.config.timeout.as_secs_f64()
                ),
                detail: None,
            }),
        }
    }

    /// Runs one collection in its own task (it finishes, and is cached, even when every
    /// caller stopped waiting).
    fn spawn_collection(self: Arc<Self>) -> Pending {
        let me = self.clone();
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            let o = Arc::new(me.run().await);
            me.log_change(&o, t0.elapsed());
            let mut c = me.cache.lock().unwrap_or_else(|p| p.into_inner());
            c.last = Some((Instant::now(), o.clone()));
            c.inflight = None;
            o
        });
        let name = self.name.clone();
        async move {
            task.await.unwrap_or_else(|e| {
                Arc::new(Outcome::Failed {
                    message: format!("{name}: the collection task failed: {e}"),
                    detail: None,
                })
            })
        }
        .boxed()
        .shared()
    }

    /// Logs a failure once per change of its message, and the recovery.
    fn log_change(&self, o: &Outcome, took: Duration) {
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match o {
            Outcome::Families(_) => {
                if last.take().is_some() {
                    tracing::info!(collector = %self.name, secs = took.as_secs_f64(), "collector works again");
                }
            }
            Outcome::Failed { message, detail } => {
                if last.as_deref() != Some(message.as_str()) {
                    tracing::error!(
                        collector = %self.name,
                        "collector failed, its families are left out: {message}{}",
                        detail.as_deref().map(|d| format!("\n{d}")).unwrap_or_default()
                    );
                    *last = Some(message.clone());
                }
            }
        }
    }
}
