//! Answers "what are the targets of this path with these parameters": resolves the
//! path to generators, gets each one's output (static: from memory; dynamic: through
//! the runners), and merges them in path order. Never returns a partial list.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::catalog::{Catalog, Snapshot};
use crate::error::{ErrorKind, FailedGenerator, GeneratorError, PathError};
use crate::metrics::Metrics;
use crate::params::Params;
use crate::runner::{RunMode, Runners};
use crate::tree::{GeneratorFile, Selection, SubPath};
use crate::validate::{self, GeneratorOutput};

/// Where a generator's output came from in this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A static file held in memory.
    Memory,
    /// A run made for this request.
    Run,
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

/// The discovery engine shared by the HTTP layer, `check` and workers.
pub struct Engine {
    catalog: Arc<Catalog>,
    runners: Arc<Runners>,
    metrics: Arc<Metrics>,
}

impl Engine {
    /// A new engine over `catalog`, running dynamic generators with `runners`.
    pub fn new(catalog: Arc<Catalog>, runners: Arc<Runners>, metrics: Arc<Metrics>) -> Engine {
        Engine {
            catalog,
            runners,
            metrics,
        }
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The runners.
    pub fn runners(&self) -> &Arc<Runners> {
        &self.runners
    }

    /// Gets the outcome of every generator under `sub`, running dynamic ones concurrently.
    pub async fn run_path(&self, sub: &SubPath, params: &Params) -> Result<PathRun, PathError> {
        let snapshot = self.catalog.snapshot();
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
                .map(|g| self.outcome(&snapshot, g, params)),
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
            };
        }
        let result = self.run_dynamic(&generator, params).await;
        GeneratorOutcome {
            generator,
            result,
            duration: started.elapsed(),
            source: Source::Run,
        }
    }

    /// Runs a dynamic generator and validates its output.
    pub async fn run_dynamic(
        &self,
        generator: &GeneratorFile,
        params: &Params,
    ) -> Result<Arc<GeneratorOutput>, GeneratorError> {
        let started = Instant::now();
        let result = self
            .runners
            .run(generator, params, RunMode::Serve)
            .await
            .and_then(|value| {
                validate::into_output(&value, &validate::Profile::SERVE).map_err(|e| {
                    GeneratorError::new(
                        ErrorKind::Invalid,
                        format!("{}: {}", generator.rel, e.summary),
                    )
                })
            });
        self.metrics
            .observe_generator_run(&generator.rel, &result, started.elapsed());
        self.catalog
            .status()
            .record_run(&generator.rel, params, &result, started.elapsed());
        if let Err(e) = &result {
            tracing::warn!(generator = %generator.rel, kind = ?e.kind, error = %e.message, "generator failed");
        }
        result
    }
}
