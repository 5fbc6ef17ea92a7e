//! The cache instantiated for dynamic generators: the key is the generator's version
//! (path and file stamp, so an edited script is never answered from the old one's
//! results) plus the canonical parameters; a run goes through the runners and is
//! validated once; successful results are persisted when `--cache-dir` is set.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;

use super::core::{Cache, Source};
use super::key::RunKey;
use super::persist::DiskStore;
use super::policy::CacheSettings;
use crate::catalog::Snapshot;
use crate::encode;
use crate::error::{ErrorKind, GeneratorError};
use crate::mem;
use crate::metrics::Metrics;
use crate::params::Params;
use crate::runner::{RunMode, Runners, exec};
use crate::status::{CacheState, StatusBoard};
use crate::tree::{GeneratorFile, GeneratorKind};
use crate::validate::{self, GeneratorOutput};

/// Runs generators for the cache.
pub struct GeneratorSource {
    runners: Arc<Runners>,
    metrics: Arc<Metrics>,
    status: Arc<StatusBoard>,
    store: Option<Arc<DiskStore>>,
}

/// The generator cache.
pub type GeneratorCache = Cache<GeneratorSource>;

/// Builds the generator cache (and opens its disk store when `--cache-dir` is set).
pub fn build(
    runners: Arc<Runners>,
    metrics: Arc<Metrics>,
    status: Arc<StatusBoard>,
    settings: &CacheSettings,
) -> std::io::Result<GeneratorCache> {
    let store = match &settings.cache_dir {
        Some(dir) if settings.policy.enabled => Some(Arc::new(DiskStore::open(dir)?)),
        _ => None,
    };
    Ok(Cache::new(
        GeneratorSource {
            runners,
            metrics: metrics.clone(),
            status,
            store,
        },
        settings.policy.clone(),
        metrics,
        &settings.name,
    ))
}

impl GeneratorCache {
    /// Loads the persisted results whose generator is unchanged in `snapshot`
    /// (blocking file reads: call from a blocking context). Returns how many.
    pub fn load_persisted(&self, snapshot: &Snapshot) -> usize {
        let Some(store) = self.source().store.clone() else {
            return 0;
        };
        let max = self.policy().max_entries;
        let now = SystemTime::now();
        let mut loaded = 0;
        for p in store.load_all(max) {
            let current = snapshot
                .listing
                .generators
                .iter()
                .find(|g| g.rel == p.generator && !g.kind.is_static());
            let Some(generator) = current else {
                store.remove_file(&p.file);
                continue;
            };
            if generator.stamp != p.stamp {
                // The script changed since: its old results must not be served.
                store.remove_file(&p.file);
                continue;
            }
            let age = now.duration_since(p.updated).unwrap_or(Duration::ZERO);
            let key = RunKey::new(generator.clone(), &p.params);
            if self.preload(key, p.output, age) {
                loaded += 1;
            } else {
                store.remove_file(&p.file);
            }
        }
        if loaded > 0 {
            tracing::info!(
                entries = loaded,
                dir = %store.dir().display(),
                "loaded persisted generator results"
            );
        }
        loaded
    }
}

impl Source for GeneratorSource {
    type Key = RunKey;
    type Value = Arc<GeneratorOutput>;
    type Error = GeneratorError;

    fn run(&self, key: &RunKey) -> BoxFuture<'static, Result<Self::Value, Self::Error>> {
        let runners = self.runners.clone();
        let metrics = self.metrics.clone();
        let status = self.status.clone();
        let key = key.clone();
        Box::pin(async move {
            run_and_validate(&runners, &metrics, &status, &key.generator, &key.params).await
        })
    }

    fn stored(&self, key: &RunKey, value: &Arc<GeneratorOutput>, at: SystemTime) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let (key, value) = (key.clone(), value.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.save(&key, &value, at) {
                tracing::warn!(generator = %key.generator.rel, dir = %store.dir().display(), error = %e, "cannot persist a generator result");
            }
        });
    }

    fn state_changed(&self, key: &RunKey, state: CacheState, produced_at: Option<SystemTime>) {
        self.status
            .set_cache_state(&key.generator.rel, state, produced_at);
    }

    fn evicted(&self, key: &RunKey) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let key = key.clone();
        tokio::task::spawn_blocking(move || store.remove(&key));
    }
}

/// Runs a dynamic generator and validates its output (no caching).
pub async fn run_and_validate(
    runners: &Runners,
    metrics: &Metrics,
    status: &StatusBoard,
    generator: &GeneratorFile,
    params: &Params,
) -> Result<Arc<GeneratorOutput>, GeneratorError> {
    let started = Instant::now();
    let result = run_serve(runners, generator, params).await;
    metrics.observe_generator_run(&generator.rel, &result, started.elapsed());
    status.record_run(&generator.rel, params, &result, started.elapsed());
    if let Err(e) = &result {
        tracing::warn!(generator = %generator.rel, kind = ?e.kind, error = %e.message, "generator failed");
    }
    result
}

/// Runs a dynamic generator for `serve` and validates and encodes its output.
///
/// Both kinds hand over their output as JSON text (a program's stdout, a Python
/// worker's result as it wrote it), which goes through the one-pass encoder; the tree
/// path (`into_output`) only runs for output the encoder declines, so every error
/// message is the tree path's. Memory freed by a big run is given back to the system
/// (`mem`).
async fn run_serve(
    runners: &Runners,
    generator: &GeneratorFile,
    params: &Params,
) -> Result<Arc<GeneratorOutput>, GeneratorError> {
    let rel = &generator.rel;
    let (result, handled) = if generator.kind == GeneratorKind::Executable {
        let out = runners
            .exec()
            .run_bytes(generator, params, RunMode::Serve)
            .await?;
        let result = encode_or_validate(rel, &out, || exec::parse_stdout(rel, &out));
        (result, out.len())
    } else {
        let python = runners.python();
        let started = Instant::now();
        let raw = python.run_raw(generator, params, RunMode::Serve).await?;
        let received = started.elapsed();
        let json = raw.json();
        let result = encode_or_validate(rel, json, || python.parse(generator, &raw));
        let script = raw.script_seconds();
        // httpsd's own part of a run apart from the script's, measured in one place
        // (bench/scale.py reads it): the call's overhead (a free worker, the request,
        // the result through the pipe) and the encoding.
        tracing::debug!(
            generator = %rel,
            bytes = json.len(),
            script_seconds = script,
            call_overhead_seconds = (received.as_secs_f64() - script).max(0.0),
            encode_seconds = (started.elapsed() - received).as_secs_f64(),
            "Python generator run"
        );
        (result, json.len())
    };
    if handled >= mem::TRIM_AFTER_BYTES {
        // Off the async workers: a trim walks every arena.
        tokio::task::spawn_blocking(mem::trim);
    }
    result
}

/// Encodes `json` in one pass; when the encoder declines it, reads it as a tree
/// (`parse`) and validates that, for the tree path's error message. The tree is
/// dropped before returning.
fn encode_or_validate(
    rel: &str,
    json: &[u8],
    parse: impl FnOnce() -> Result<serde_json::Value, GeneratorError>,
) -> Result<Arc<GeneratorOutput>, GeneratorError> {
    if let Some(output) = encode::encode_json(json) {
        return Ok(Arc::new(output));
    }
    let value = parse()?;
    validate::into_output(&value, &validate::Profile::SERVE)
        .map_err(|e| GeneratorError::new(ErrorKind::Invalid, format!("{rel}: {}", e.summary)))
}
