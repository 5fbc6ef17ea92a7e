//! Caching and throttling of dynamic generator runs: one run at a time per
//! (generator, parameters), results reused for `cache_time`, failures for
//! `cache_exception_time`, stale-while-revalidate bounded by `--max-stale`,
//! proactive refresh of entries pollers still ask for, bounded memory, and last good
//! results persisted to `--cache-dir`. See `docs/cache.md` for the model.
//!
//! - [`policy`]: the rules ([`Policy`]), their defaults and the validated
//!   [`CacheSettings`] (the command line that fills them is `cli::cache`).
//! - [`key`]: the identity of a run ([`RunKey`]), shared by the cache and the store.
//! - [`core`]: the cache itself, generic over what it runs; it knows time and
//!   concurrency only, so it is unit-tested with tokio's paused clock.
//! - [`generators`]: the cache instantiated for generator runs (key, run, metrics).
//! - [`persist`]: the on-disk store of last good results.

pub mod core;
pub mod generators;
pub mod key;
pub mod persist;
pub mod policy;

pub use self::core::{Cache, CacheKey, EntryState, EntryView, Lookup, Served, Source};
pub use generators::GeneratorCache;
pub use key::RunKey;
pub use policy::{CacheSettings, Policy};
