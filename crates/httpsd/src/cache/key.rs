//! The key of a cached generator run, shared by the cache of runs and its disk store.

use std::hash::{Hash, Hasher};

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
