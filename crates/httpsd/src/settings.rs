//! Validated settings: what the handlers and components see, built from the CLI once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::ServeArgs;

/// A setting that cannot be used, with the option it came from.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The root directory is missing or not a directory.
    #[error("invalid value for ROOT_DIR: {0}")]
    Root(String),
    /// An option has an unusable value.
    #[error("invalid value for {option}: {reason}")]
    Option {
        /// The option, as typed (`--url_prefix`).
        option: &'static str,
        /// Why.
        reason: String,
    },
}

/// Settings of `serve`.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Canonical root directory.
    pub root: PathBuf,
    /// Host to bind.
    pub host: String,
    /// Port to bind.
    pub port: u16,
    /// Normalised URL prefix.
    pub prefix: String,
    /// Maximum concurrent connections.
    pub connection_limit: usize,
    /// Largest static file accepted.
    pub max_file_size: u64,
    /// Fallback rescan period.
    pub rescan_interval: Duration,
    /// Settings of the dynamic generator runners.
    pub runner: crate::runner::RunnerSettings,
    /// Caching of dynamic generator results.
    pub cache: crate::cache::CacheSettings,
}

impl ServeSettings {
    /// Validates `args`.
    pub fn from_args(args: &ServeArgs) -> Result<ServeSettings, SettingsError> {
        let root = canonical_root(&args.listen.root_dir)?;
        if !(0.05..=3600.0).contains(&args.rescan_interval) {
            return Err(SettingsError::Option {
                option: "--rescan-interval",
                reason: format!(
                    "{} is not between 0.05 and 3600 seconds",
                    args.rescan_interval
                ),
            });
        }
        if args.listen.connection_limit == 0 {
            return Err(SettingsError::Option {
                option: "--connection-limit",
                reason: "must be at least 1".into(),
            });
        }
        let runner = crate::runner::RunnerSettings::from_args(&root, &args.runner)?;
        let cache = crate::cache::CacheSettings::from_args(&args.cache)
            .with_max_run_time(runner.max_run_time);
        Ok(ServeSettings {
            root: root.clone(),
            host: args.listen.host.clone(),
            port: args.listen.port,
            prefix: normalize_prefix(&args.listen.url_prefix).map_err(|reason| {
                SettingsError::Option {
                    option: "--url_prefix",
                    reason,
                }
            })?,
            connection_limit: args.listen.connection_limit,
            max_file_size: args.max_file_size,
            rescan_interval: Duration::from_secs_f64(args.rescan_interval),
            runner,
            cache,
        })
    }
}

/// Checks that `dir` is an existing directory and returns its canonical path.
pub fn canonical_root(dir: &Path) -> Result<PathBuf, SettingsError> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| SettingsError::Root(format!("directory {:?} does not exist ({e})", dir)))?;
    if !meta.is_dir() {
        return Err(SettingsError::Root(format!("{:?} is not a directory", dir)));
    }
    std::fs::canonicalize(dir).map_err(|e| SettingsError::Root(format!("{:?}: {e}", dir)))
}

/// Normalises a URL prefix: leading slash added, trailing slashes removed, `/` is none.
pub fn normalize_prefix(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if let Some(c) = trimmed
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, '?' | '#' | '{' | '}' | '%' | '\\'))
    {
        return Err(format!(
            "{raw:?} contains {c:?}, which a URL prefix cannot hold"
        ));
    }
    if trimmed
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(format!("{raw:?} has an empty, '.' or '..' segment"));
    }
    Ok(format!("/{trimmed}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_normalisation() {
        assert_eq!(normalize_prefix("").unwrap(), "");
        assert_eq!(normalize_prefix("/").unwrap(), "");
        assert_eq!(normalize_prefix("http_sd").unwrap(), "/http_sd");
        assert_eq!(normalize_prefix("/a/b/").unwrap(), "/a/b");
        assert!(normalize_prefix("/a b").is_err());
        assert!(normalize_prefix("/a//b").is_err());
        assert!(normalize_prefix("/a/../b").is_err());
    }
}
