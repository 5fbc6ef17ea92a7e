//! The key of a cached generator run, shared by the cache of runs and its disk store.

use std::hash::{Hash, Hasher};

use std::time::Duration;

use super::core::CacheKey;
use crate::error::{ErrorKind, GeneratorError};
use crate::params::Params;
use crate::tree::GeneratorFile;

/// The identity of a dynamic run: which generator (path and content version) and
/// which parameters (canonical: `?a=1&b=2` equals `?b=2&a=1`).
#[derive(Debug, Clone)]
pub struct RunKey {
    /// The generator as scanned.
    pub generator: GeneratorFile,
    /// Canonical parameters.
    pub params: Params,
}

impl RunKey {
    /// The key of `generator` run with `params` (canonicalised here).
    pub fn new(generator: GeneratorFile, params: &Params) -> RunKey {
        RunKey {
            generator,
            params: params.canonical(),
        }
    }
}

/// The cache's view of a run key (shared by the generators' and the exporters' caches).
impl CacheKey for RunKey {
    type Error = GeneratorError;

    fn label(&self) -> &str {
        &self.generator.rel
    }

    /// The error of a caller that stopped waiting for this run after `waited` (the
    /// cache's `timeout_error`, for generators and exporters alike).
    fn timeout_error(&self, waited: Duration) -> GeneratorError {
        GeneratorError::new(
            ErrorKind::Timeout,
            format!(
                "{}: no result within the {}s timeout; the run goes on and its result will answer later requests",
                self.generator.rel,
                waited.as_secs_f64()
            ),
        )
    }

    /// The error recorded when this run is abandoned after `limit`.
    fn abandoned_error(&self, limit: Duration) -> GeneratorError {
        GeneratorError::new(
            ErrorKind::Timeout,
            format!(
                "{}: the run was abandoned after {}s",
                self.generator.rel,
                limit.as_secs_f64()
            ),
        )
    }

    /// The error of a run that vanished without a result.
    fn lost_error(&self) -> GeneratorError {
        GeneratorError::new(
            ErrorKind::Internal,
            format!("{}: the run ended without a result", self.generator.rel),
        )
    }
}

impl PartialEq for RunKey {
    fn eq(&self, other: &Self) -> bool {
        self.generator.rel == other.generator.rel
            && self.generator.stamp == other.generator.stamp
            && self.params == other.params
    }
}

impl Eq for RunKey {}

impl Hash for RunKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.generator.rel.hash(state);
        self.generator.stamp.hash(state);
        self.params.hash(state);
    }
}
