//! Caching and throttling of dynamic generator runs (placeholder until the caching
//! issue lands): the original's cache options are accepted here.

use std::path::PathBuf;

/// The original's cache options (3.x flags and 1.x `--cache-type`/`--cache-opt`).
#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    /// Directory where last good results are persisted.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Maximum age of a served result in seconds.
    #[arg(short = 'm', long)]
    pub cache_seconds: Option<u64>,
    /// Background refresh period in seconds.
    #[arg(long)]
    pub cache_refresh_interval: Option<u64>,
    /// Refresh concurrency.
    #[arg(long)]
    pub update_threads: Option<usize>,
    /// 1.x cache type: Timeout or None.
    #[arg(long)]
    pub cache_type: Option<String>,
    /// 1.x cache option k=v (repeatable).
    #[arg(long)]
    pub cache_opt: Vec<String>,
}

impl CacheArgs {
    /// The options given that this version does not use yet.
    pub fn ignored_options(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.cache_dir.is_some() {
            v.push("--cache-dir");
        }
        if self.cache_seconds.is_some() {
            v.push("-m/--cache-seconds");
        }
        if self.cache_refresh_interval.is_some() {
            v.push("--cache-refresh-interval");
        }
        if self.update_threads.is_some() {
            v.push("--update-threads");
        }
        if self.cache_type.is_some() {
            v.push("--cache-type");
        }
        if !self.cache_opt.is_empty() {
            v.push("--cache-opt");
        }
        v
    }
}
