//! Answers "what are the targets of this path with these parameters": resolves the
//! path to generators, gets each one's output (static: from memory; dynamic: through
//! the runners), and merges them in path order. Never returns a partial list.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::cache::{CacheSettings, GeneratorCache, Lookup, RunKey, Served};
use crate::catalog::{Catalog, Snapshot};
use crate::error::{ErrorKind, FailedGenerator, GeneratorError, PathError};
use crate::metrics::Metrics;
use crate::params::Params;
use crate::runner::python::Warmth;
use crate::runner::{RunnerSettings, Runners};
use crate::tree::{GeneratorFile, Selection, SubPath};
use crate::validate::GeneratorOutput;

/// Where a generator's output came from in this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A static file held in memory.
    Memory,
    /// A run made for (or joined by) this request.
    Run,
    /// A result of an earlier run, from the cache.
    Cache,
}

/// How the cache answered for a dynamic generator (the debug view shows it).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CacheInfo {
    /// Fresh, stale, ran, cached_failure or timeout.
    pub served: Served,
    /// Age in seconds of the cached result or failure, when one was served.
    pub age_seconds: Option<f64>,
}

/// The outcome of one generator within a path request.
#[derive(Debug, Clone)]
pub struct GeneratorOutcome {
    /// The generator.
    pub generator: GeneratorFile,
    /// Its validated output, or why there is none.
    pub result: Result<Arc<GeneratorOutput>, GeneratorError>,
    /// Time spent obtaining it in this request.
    pub duration: Duration,
    /// Where it came from.
    pub source: Source,
    /// How the cache answered (dynamic generators only).
    pub cache: Option<CacheInfo>,
}

/// Every generator outcome of one path request, in path order.
#[derive(Debug, Clone)]
pub struct PathRun {
    /// The path.
    pub sub: SubPath,
    /// Outcomes in generator-path order.
    pub outcomes: Vec<GeneratorOutcome>,
}

/// A complete target list, ready to send.
#[derive(Debug, Clone)]
pub struct PathBody {
    /// The JSON bytes (Flask format, trailing newline).
    pub bytes: Bytes,
    /// Number of groups.
    pub group_count: usize,
    /// Number of targets.
    pub target_count: usize,
}

impl PathRun {
    /// Merges the outcomes into one list, or fails if any generator failed.
    pub fn into_body(&self) -> Result<PathBody, PathError> {
        let failed: Vec<FailedGenerator> = self
            .outcomes
            .iter()
            .filter_map(|o| {
                o.result.as_ref().err().map(|e| FailedGenerator {
                    generator: o.generator.rel.clone(),
                    error: e.clone(),
                })
            })
            .collect();
        if !failed.is_empty() {
            return Err(PathError::Generators(failed));
        }
        let outputs: Vec<&GeneratorOutput> = self
            .outcomes
            .iter()
            .filter_map(|o| o.result.as_deref().ok())
            .collect();
        let len: usize = outputs.iter().map(|o| o.groups_json.len() + 1).sum();
        let mut bytes = Vec::with_capacity(len + 3);
        bytes.push(b'[');
        let mut first = true;
        for o in outputs.iter().filter(|o| o.group_count > 0) {
            if !first {
                bytes.push(b',');
            }
            first = false;
            bytes.extend_from_slice(&o.groups_json);
        }
        bytes.extend_from_slice(b"]\n");
        Ok(PathBody {
            bytes: Bytes::from(bytes),
            group_count: outputs.iter().map(|o| o.group_count).sum(),
            target_count: outputs.iter().map(|o| o.target_count).sum(),
        })
    }
}

/// How many merged bodies of all-static paths are kept (per snapshot generation).
const MERGED_BODIES_MAX: usize = 4096;

/// Merged bodies of paths whose generators are all static, valid for one snapshot
/// generation. A snapshot never changes once published, so such a body is a pure
/// function of (generation, path): keeping it spares every request the merge copy
/// and its allocations. Only paths that exist are kept, so the map is bounded by the
/// tree (and by [`MERGED_BODIES_MAX`]).
#[derive(Default)]
struct MergedBodies {
    generation: u64,
    bodies: HashMap<String, PathBody>,
}

impl MergedBodies {
    fn get(&self, generation: u64, rel: &str) -> Option<PathBody> {
        if self.generation != generation {
            return None;
        }
        self.bodies.get(rel).cloned()
    }

    fn put(&mut self, generation: u64, rel: String, body: PathBody) {
        if generation < self.generation {
            return;
        }
        if generation > self.generation {
            self.generation = generation;
            self.bodies.clear();
        }
        if self.bodies.len() < MERGED_BODIES_MAX {
            self.bodies.insert(rel, body);
        }
    }
}

/// The discovery engine shared by the HTTP layer, `check` and workers.
pub struct Engine {
    catalog: Arc<Catalog>,
    runners: Arc<Runners>,
    cache: GeneratorCache,
    merged: RwLock<MergedBodies>,
}

impl Engine {
    /// A new engine over `catalog`, running dynamic generators with `runners`, without
    /// caching (each request runs; concurrent identical requests share one run). For
    /// `check` and workers; `serve` uses [`Engine::with_cache`].
    pub fn new(catalog: Arc<Catalog>, runners: Arc<Runners>, metrics: Arc<Metrics>) -> Engine {
        let cache = crate::cache::generators::build(
            runners.clone(),
            metrics,
            catalog.status().clone(),
            &CacheSettings::uncached(),
        )
        .expect("an uncached cache opens no directory");
        Engine {
            catalog,
            runners,
            cache,
            merged: RwLock::default(),
        }
    }

    /// A new engine whose dynamic generator results are cached per `settings` (this
    /// opens `--cache-dir`; call [`Engine::start_cache`] once the runtime runs).
    pub fn with_cache(
        catalog: Arc<Catalog>,
        runners: Arc<Runners>,
        metrics: Arc<Metrics>,
        settings: &CacheSettings,
    ) -> std::io::Result<Engine> {
        let cache = crate::cache::generators::build(
            runners.clone(),
            metrics,
            catalog.status().clone(),
            settings,
        )?;
        Ok(Engine {
            catalog,
            runners,
            cache,
            merged: RwLock::default(),
        })
    }

    /// Loads persisted results (blocking) and starts the refresh and sweep passes.
    pub async fn start_cache(&self) -> tokio::task::JoinHandle<()> {
        let cache = self.cache.clone();
        let snapshot = self.catalog.snapshot();
        let _ = tokio::task::spawn_blocking(move || cache.load_persisted(&snapshot)).await;
        self.cache.spawn_maintenance()
    }

    /// The cache of dynamic generator results (its entries feed the admin page).
    pub fn cache(&self) -> &GeneratorCache {
        &self.cache
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The runners.
    pub fn runners(&self) -> &Arc<Runners> {
        &self.runners
    }

    /// The merged target list of `sub` (`rel` is `sub.as_rel()`), or why there is none.
    /// Bodies of all-static paths are kept per snapshot generation.
    pub async fn path_body(
        &self,
        sub: &SubPath,
        rel: &str,
        params: &Params,
    ) -> Result<PathBody, PathError> {
        let snapshot = self.catalog.snapshot();
        let memo = {
            let merged = self.merged.read().unwrap_or_else(|e| e.into_inner());
            merged.get(snapshot.generation, rel)
        };
        if let Some(body) = memo {
            return Ok(body);
        }
        let run = self.run_path_in(&snapshot, sub, params).await?;
        let body = run.into_body()?;
        if run.outcomes.iter().all(|o| o.source == Source::Memory) {
            self.merged.write().unwrap_or_else(|e| e.into_inner()).put(
                snapshot.generation,
                rel.to_string(),
                body.clone(),
            );
        }
        Ok(body)
    }

    /// Gets the outcome of every generator under `sub`, running dynamic ones concurrently.
    pub async fn run_path(&self, sub: &SubPath, params: &Params) -> Result<PathRun, PathError> {
        self.run_path_in(&self.catalog.snapshot(), sub, params)
            .await
    }

    async fn run_path_in(
        &self,
        snapshot: &Snapshot,
        sub: &SubPath,
        params: &Params,
    ) -> Result<PathRun, PathError> {
        let generators = match snapshot.listing.select(sub) {
            Selection::Generators(g) => g.to_vec(),
            Selection::NotFound => return Err(PathError::NotFound(sub.as_rel())),
            Selection::Unreadable(u) => {
                return Err(PathError::Unreadable {
                    dir: u.rel.clone(),
                    reason: u.reason.clone(),
                });
            }
        };
        let outcomes = futures::future::join_all(
            generators
                .into_iter()
                .map(|g| self.outcome(snapshot, g, params)),
        )
        .await;
        Ok(PathRun {
            sub: sub.clone(),
            outcomes,
        })
    }

    async fn outcome(
        &self,
        snapshot: &Snapshot,
        generator: GeneratorFile,
        params: &Params,
    ) -> GeneratorOutcome {
        let started = Instant::now();
        if generator.kind.is_static() {
            let result = snapshot
                .statics
                .get(&generator.rel)
                .cloned()
                .unwrap_or_else(|| {
                    Err(GeneratorError::new(
                        ErrorKind::Internal,
                        format!("{} is not loaded", generator.rel),
                    ))
                });
            return GeneratorOutcome {
                generator,
                result,
                duration: started.elapsed(),
                source: Source::Memory,
                cache: None,
            };
        }
        let lookup = self.lookup_dynamic(&generator, params).await;
        let source = match lookup.served {
            Served::Fresh | Served::Stale | Served::CachedFailure => Source::Cache,
            Served::Ran | Served::Timeout => Source::Run,
        };
        GeneratorOutcome {
            generator,
            result: lookup.result,
            duration: started.elapsed(),
            source,
            cache: Some(CacheInfo {
                served: lookup.served,
                age_seconds: lookup.age.map(|a| a.as_secs_f64()),
            }),
        }
    }

    /// A dynamic generator's validated output, through the cache.
    pub async fn run_dynamic(
        &self,
        generator: &GeneratorFile,
        params: &Params,
    ) -> Result<Arc<GeneratorOutput>, GeneratorError> {
        self.lookup_dynamic(generator, params).await.result
    }

    /// Like [`Engine::run_dynamic`], also saying how the cache answered.
    pub async fn lookup_dynamic(
        &self,
        generator: &GeneratorFile,
        params: &Params,
    ) -> Lookup<Arc<GeneratorOutput>, GeneratorError> {
        self.cache
            .get(&RunKey::new(generator.clone(), params))
            .await
    }
}

/// Scans the tree once, keeps it fresh (the returned watcher task), and starts the
/// runners (the Python pool warm only when the tree has Python generators): what
/// `serve` and `worker-only` start with.
pub async fn start_tree(
    root: &std::path::Path,
    max_file_size: u64,
    rescan_interval: std::time::Duration,
    runner: &RunnerSettings,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Arc<Catalog>, tokio::task::JoinHandle<()>, Arc<Runners>)> {
    let root = root.to_path_buf();
    let catalog = Arc::new(
        tokio::task::spawn_blocking(move || Catalog::new(&root, max_file_size, metrics)).await?,
    );
    let watcher = tokio::spawn(crate::watch::run(catalog.clone(), rescan_interval));
    // Warm when the tree has a Python generator now, lazy otherwise (a tree without
    // Python keeps no interpreter resident until one appears).
    let has_python = (catalog.snapshot().listing.generators.iter())
        .any(|g| g.kind == crate::tree::GeneratorKind::Python);
    let warmth = if has_python {
        Warmth::Warm
    } else {
        Warmth::Lazy
    };
    let runners = match Runners::start(runner, warmth).await {
        Ok(r) => Arc::new(r),
        Err(e) => {
            watcher.abort();
            anyhow::bail!("cannot start the generator runners: {e}");
        }
    };
    Ok((catalog, watcher, runners))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(s: &'static str) -> PathBody {
        PathBody {
            bytes: Bytes::from_static(s.as_bytes()),
            group_count: 0,
            target_count: 0,
        }
    }

    #[test]
    fn merged_bodies_follow_the_generation() {
        let mut m = MergedBodies::default();
        m.put(3, "a".into(), body("[1]\n"));
        assert_eq!(m.get(3, "a").unwrap().bytes, "[1]\n");
        assert!(m.get(4, "a").is_none(), "a newer snapshot must not see it");
        // A late writer from an older snapshot must not replace newer bodies.
        m.put(4, "a".into(), body("[2]\n"));
        m.put(3, "a".into(), body("[1]\n"));
        assert_eq!(m.get(4, "a").unwrap().bytes, "[2]\n");
        assert!(m.get(3, "a").is_none());
    }

    #[test]
    fn merged_bodies_are_bounded() {
        let mut m = MergedBodies::default();
        for i in 0..MERGED_BODIES_MAX + 10 {
            m.put(1, i.to_string(), body("[]\n"));
        }
        assert_eq!(m.bodies.len(), MERGED_BODIES_MAX);
    }
}
