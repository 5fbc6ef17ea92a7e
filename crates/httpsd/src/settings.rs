//! The vocabulary of validated settings, below every other module: the error a bad
//! option gives, checks shared by several commands, and defaults shared by several
//! commands. It imports nothing from the crate; each command's settings struct lives
//! with the command, and `cli` builds it.

use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Default `--max-file-size`: static files larger than this many bytes are refused
/// (one value for `serve`, `check`, `server-only` and `worker-only`).
pub const DEFAULT_MAX_FILE_SIZE: u64 = 32 * 1024 * 1024;

/// Checks that a duration option is a finite number of seconds within `range`.
pub fn seconds(
    option: &'static str,
    value: f64,
    range: std::ops::RangeInclusive<f64>,
) -> Result<Duration, SettingsError> {
    if !value.is_finite() || !range.contains(&value) {
        return Err(SettingsError::Option {
            option,
            reason: format!(
                "{value} is not between {} and {} seconds",
                range.start(),
                range.end()
            ),
        });
    }
    Ok(Duration::from_secs_f64(value))
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
