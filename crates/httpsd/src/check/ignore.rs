//! `check --ignore-path`: which files the user asked `check` to leave out.
//!
//! Two forms are accepted, so that both the original's CI scripts and new ones work:
//! - the original's form, a raw string prefix of the path as the original printed it
//!   (the root *as typed* joined with the file's path: `check t -i t/fail` ignores
//!   `t/fail/x.py` and also `t/failing.json`, exactly as the original does);
//! - a path relative to the root (`check t -i fail`), matched component-wise, so
//!   `fail` ignores `fail` and everything below it but not `failing.json`.
//!
//! An absolute pattern is also matched component-wise against the file's absolute path
//! (both the path as scanned and the root as typed, made absolute).

use std::path::{Path, PathBuf};

/// The `--ignore-path` patterns of one run.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// As typed, for messages and the original's raw-prefix form.
    raw: String,
    /// Normalised relative form (`./a//b/` → `a/b`), when the pattern is relative.
    rel: Option<String>,
    /// Absolute form (lexically normalised), when the pattern is absolute.
    abs: Option<PathBuf>,
}

impl IgnoreRules {
    /// Rules from the patterns as typed.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> IgnoreRules {
        IgnoreRules {
            patterns: patterns
                .iter()
                .map(|p| p.as_ref())
                .filter(|p| !p.is_empty())
                .map(|raw| {
                    let is_abs = Path::new(raw).is_absolute();
                    Pattern {
                        raw: raw.to_string(),
                        rel: (!is_abs).then(|| normalize_rel(raw)),
                        abs: is_abs.then(|| PathBuf::from(normalize_rel(raw))),
                    }
                })
                .collect(),
        }
    }

    /// True when there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns as typed.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|p| p.raw.as_str())
    }

    /// The first pattern that ignores a file.
    ///
    /// `display` is the root as typed joined with `rel` (the original's form), `rel` the
    /// path below the root, `abs` the absolute path (root canonical, file not resolved).
    pub fn matching(&self, display: &str, rel: &str, abs: &Path) -> Option<&str> {
        self.patterns
            .iter()
            .find(|p| {
                display.starts_with(&p.raw)
                    || p.rel.as_deref().is_some_and(|r| is_under(rel, r))
                    || p.abs.as_deref().is_some_and(|a| abs.starts_with(a))
            })
            .map(|p| p.raw.as_str())
    }
}

/// `./a//b/` → `a/b`; `.` and `./` → `` (the whole root).
fn normalize_rel(raw: &str) -> String {
    let lead = if raw.starts_with('/') { "/" } else { "" };
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("{lead}{}", parts.join("/"))
}

/// True when `path` is `dir` or below it; the empty `dir` is the root (everything).
fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path == dir
        || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
}

/// Joins the root as typed and a path below it the way Python's `os.path.join` does.
pub fn display_path(root_as_typed: &str, rel: &str) -> String {
    if rel.is_empty() {
        root_as_typed.to_string()
    } else if root_as_typed.is_empty() || root_as_typed.ends_with('/') {
        format!("{root_as_typed}{rel}")
    } else {
        format!("{root_as_typed}/{rel}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(patterns: &[&str], root: &str, rel: &str) -> Option<String> {
        let rules = IgnoreRules::new(patterns);
        let abs = Path::new("/srv/targets").join(rel);
        rules
            .matching(&display_path(root, rel), rel, &abs)
            .map(str::to_string)
    }

    #[test]
    fn original_raw_prefix_form() {
        assert_eq!(m(&["t/fail"], "t", "fail/x.py").as_deref(), Some("t/fail"));
        // A raw prefix, as in the original: also catches a sibling with a longer name.
        assert_eq!(
            m(&["t/fail"], "t", "failing.json").as_deref(),
            Some("t/fail")
        );
        assert_eq!(m(&["t/fail"], "t", "ok.json"), None);
        assert_eq!(
            m(&["./t/sub"], "./t", "sub/a.json").as_deref(),
            Some("./t/sub")
        );
        assert_eq!(m(&["t/a"], "t/", "a.json").as_deref(), Some("t/a"));
    }

    #[test]
    fn root_relative_form_is_component_wise() {
        assert_eq!(m(&["fail"], "t", "fail/x.py").as_deref(), Some("fail"));
        assert_eq!(m(&["fail/"], "t", "fail/x.py").as_deref(), Some("fail/"));
        assert_eq!(m(&["./fail"], "t", "fail").as_deref(), Some("./fail"));
        assert_eq!(m(&["fail"], "t", "failing.json"), None);
        assert_eq!(
            m(&["a/b.json"], "t", "a/b.json").as_deref(),
            Some("a/b.json")
        );
        assert_eq!(m(&["."], "t", "a/b.json").as_deref(), Some("."));
    }

    #[test]
    fn absolute_form() {
        assert_eq!(
            m(&["/srv/targets/fail"], "t", "fail/x.py").as_deref(),
            Some("/srv/targets/fail")
        );
        assert_eq!(m(&["/srv/targets/fai"], "t", "fail/x.py"), None);
        assert!(IgnoreRules::new(&[""]).is_empty());
    }
}
