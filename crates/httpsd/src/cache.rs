//! Caching and throttling of dynamic generator runs: one run at a time per
//! (generator, parameters), results reused for `cache_time`, failures for
//! `cache_exception_time`, stale-while-revalidate bounded by `--max-stale`,
//! proactive refresh of entries pollers still ask for, bounded memory, and last good
//! results persisted to `--cache-dir`. See `docs/cache.md` for the model.
//!
//! - [`options`]: the command-line options (1.x `--cache-type`/`--cache-opt`, the 3.x
//!   flags, ours) and the validated [`CacheSettings`].
//! - [`core`]: the cache itself, generic over what it runs; it knows time and
//!   concurrency only, so it is unit-tested with tokio's paused clock.
//! - [`generators`]: the cache instantiated for generator runs (key, run, metrics).
//! - [`persist`]: the on-disk store of last good results.

pub mod core;
pub mod generators;
pub mod options;
pub mod persist;

pub use self::core::{Cache, EntryState, EntryView, Lookup, Policy, Served, Source};
pub use generators::{GeneratorCache, RunKey};
pub use options::{CacheArgs, CacheOpt, CacheSettings, CacheType};
