//! The target tree on disk: which files are generators, what is ignored, and how a
//! request's sub-path maps safely onto them.
//!
//! A scan walks the root once and produces a [`Listing`]; requests never touch the
//! file system with user input, they only look the path up in the listing, so no
//! URL can make us read outside the root.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The kind of a generator, decided by its name and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorKind {
    /// A `.json` file: a list of target groups.
    Json,
    /// A `.yaml` or `.yml` file: a list of target groups.
    Yaml,
    /// A `.py` script with `generate_targets(**params)`.
    Python,
    /// Any other file with an execute bit: prints target groups as JSON (an exporter:
    /// exposition text).
    Executable,
    /// A `.prom` file of exposition text (exporter trees only, see [`Flavor`]).
    Prom,
}

/// What a tree holds: target generators (`serve ROOT`) or exporters
/// (`--exporters DIR`); it decides which files count and as what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// `.json`, `.yaml`/`.yml`, `.py` and executables.
    #[default]
    Targets,
    /// `.prom`, `.py` and executables.
    Exporters,
}

impl GeneratorKind {
    /// True for kinds whose output is a file's content rather than a run.
    pub fn is_static(self) -> bool {
        matches!(self, GeneratorKind::Json | GeneratorKind::Yaml)
    }
}

/// What identifies a version of a file's content: any change means re-read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    /// Device number.
    pub dev: u64,
    /// Inode number (changes on atomic rename).
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i128,
}

impl FileStamp {
    /// The stamp of `meta`.
    pub fn of(meta: &fs::Metadata) -> FileStamp {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

/// One generator file found by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorFile {
    /// Path relative to the root, `/`-separated (`sub/dir/gen.py`).
    pub rel: String,
    /// Absolute path (inside the root, symlinks not resolved).
    pub abs: PathBuf,
    /// Its kind.
    pub kind: GeneratorKind,
    /// Content version at scan time.
    pub stamp: FileStamp,
}

/// A file under the root that is not a generator (kept for `check` and warnings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Path relative to the root.
    pub rel: String,
    /// Why it is not a generator.
    pub reason: String,
}

/// Everything a scan found.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Generators, sorted by path components (a tree walk in name order).
    pub generators: Vec<GeneratorFile>,
    /// Every non-ignored directory relative to the root; `""` is the root.
    pub dirs: BTreeSet<String>,
    /// Non-generator files that are not ignored.
    pub skipped: Vec<Skipped>,
    /// Symlinks that point outside the root (never followed).
    pub unsafe_links: Vec<Skipped>,
    /// Directories that could not be read, with the reason: paths over them fail.
    pub unreadable: Vec<Skipped>,
}

/// True when a name below the root makes the file or directory ignored.
pub fn is_ignored_name(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.')
}

/// Scans `root` (which must be canonical) for target generators.
pub fn scan(root: &Path) -> Listing {
    scan_with(root, Flavor::Targets)
}

/// Scans `root` (which must be canonical) for the files of `flavor`.
pub fn scan_with(root: &Path, flavor: Flavor) -> Listing {
    let mut listing = Listing::default();
    listing.dirs.insert(String::new());
    let mut visited = HashSet::new();
    if let Ok(meta) = fs::metadata(root) {
        visited.insert((meta.dev(), meta.ino()));
    }
    walk(root, root, "", flavor, &mut listing, &mut visited);
    listing
        .generators
        .sort_by(|a, b| cmp_components(&a.rel, &b.rel));
    listing
        .skipped
        .sort_by(|a, b| cmp_components(&a.rel, &b.rel));
    listing
}

fn join_rel(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    rel: &str,
    flavor: Flavor,
    listing: &mut Listing,
    visited: &mut HashSet<(u64, u64)>,
) {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            listing.unreadable.push(Skipped {
                rel: rel.to_string(),
                reason: format!("cannot read directory: {e}"),
            });
            return;
        }
    };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            listing.skipped.push(Skipped {
                rel: join_rel(rel, &entry.file_name().to_string_lossy()),
                reason: "the name is not valid UTF-8".into(),
            });
            continue;
        };
        if is_ignored_name(&name) {
            continue;
        }
        let child_rel = join_rel(rel, &name);
        let abs = dir.join(&name);
        // Relative to the open directory (no walk of the whole path again), and not
        // following a symlink, like `symlink_metadata`.
        let Ok(lmeta) = entry.metadata() else {
            continue; // vanished between readdir and stat
        };
        let meta = if lmeta.file_type().is_symlink() {
            match fs::canonicalize(&abs) {
                Ok(target) if target.starts_with(root) => match fs::metadata(&target) {
                    Ok(m) => m,
                    Err(_) => continue,
                },
                Ok(target) => {
                    listing.unsafe_links.push(Skipped {
                        rel: child_rel,
                        reason: format!(
                            "symlink to {} leaves the root; not followed",
                            target.display()
                        ),
                    });
                    continue;
                }
                Err(e) => {
                    listing.skipped.push(Skipped {
                        rel: child_rel,
                        reason: format!("broken symlink: {e}"),
                    });
                    continue;
                }
            }
        } else {
            lmeta
        };
        if meta.is_dir() {
            // A directory reached twice (a symlink loop) is walked once.
            if visited.insert((meta.dev(), meta.ino())) {
                listing.dirs.insert(child_rel.clone());
                walk(root, &abs, &child_rel, flavor, listing, visited);
            }
        } else if meta.is_file() {
            let kind = match flavor {
                Flavor::Targets => classify(&name, &meta),
                Flavor::Exporters => classify_exporter(&name, &meta),
            };
            match kind {
                Some(kind) => listing.generators.push(GeneratorFile {
                    rel: child_rel,
                    abs,
                    kind,
                    stamp: FileStamp::of(&meta),
                }),
                None => listing.skipped.push(Skipped {
                    rel: child_rel,
                    reason: match flavor {
                        Flavor::Targets => {
                            "not a generator (.json, .yaml, .yml, .py or an executable file)"
                        }
                        Flavor::Exporters => "not an exporter (.prom, .py or an executable file)",
                    }
                    .into(),
                }),
            }
        }
    }
}

/// Decides whether a regular file is a generator, and of which kind.
pub fn classify(name: &str, meta: &fs::Metadata) -> Option<GeneratorKind> {
    let ext = name.rsplit_once('.').map(|(_, e)| e);
    match ext {
        Some("json") => Some(GeneratorKind::Json),
        Some("yaml" | "yml") => Some(GeneratorKind::Yaml),
        Some("py") => Some(GeneratorKind::Python),
        _ if meta.mode() & 0o111 != 0 => Some(GeneratorKind::Executable),
        _ => None,
    }
}

/// Decides whether a regular file of an exporter tree is an exporter, and of which kind.
pub fn classify_exporter(name: &str, meta: &fs::Metadata) -> Option<GeneratorKind> {
    match name.rsplit_once('.').map(|(_, e)| e) {
        Some("prom") => Some(GeneratorKind::Prom),
        Some("py") => Some(GeneratorKind::Python),
        _ if meta.mode() & 0o111 != 0 => Some(GeneratorKind::Executable),
        _ => None,
    }
}

/// Orders `/`-separated paths component by component, as a sorted tree walk does.
pub fn cmp_components(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// A request's sub-path below `targets/`, checked to be safe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SubPath {
    components: Vec<String>,
}

/// Why a requested sub-path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubPathError {
    /// The path tries to leave the root or smuggle a separator.
    #[error("unsafe path: {0}")]
    Unsafe(&'static str),
    /// The path's percent-encoding is not valid UTF-8.
    #[error("the path is not valid UTF-8 after percent-decoding")]
    NotUtf8,
}

impl SubPath {
    /// The root itself.
    pub fn root() -> SubPath {
        SubPath::default()
    }

    /// Parses the raw (still percent-encoded) URL path below `targets/`.
    ///
    /// Empty segments (`a//b`, a trailing `/`) are dropped, so `sub` and `sub/` are
    /// the same path. `..` and `.` (raw or encoded), encoded `/` or `\`, and NUL are
    /// refused outright rather than normalised: nobody sends them by accident.
    pub fn parse(raw: &str) -> Result<SubPath, SubPathError> {
        let mut components = Vec::new();
        for seg in raw.split('/') {
            if seg.is_empty() {
                continue;
            }
            let decoded = percent_encoding::percent_decode_str(seg)
                .decode_utf8()
                .map_err(|_| SubPathError::NotUtf8)?;
            if decoded == ".." || decoded == "." {
                return Err(SubPathError::Unsafe(
                    "'..' and '.' segments are not allowed",
                ));
            }
            if decoded.contains('/') || decoded.contains('\\') {
                return Err(SubPathError::Unsafe(
                    "encoded '/' or '\\' in a path segment is not allowed",
                ));
            }
            if decoded.contains('\0') {
                return Err(SubPathError::Unsafe("NUL in a path is not allowed"));
            }
            components.push(decoded.into_owned());
        }
        Ok(SubPath { components })
    }

    /// The components.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// True for the root path.
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// `/`-joined form (`""` for the root), as used in metrics and logs.
    pub fn as_rel(&self) -> String {
        self.components.join("/")
    }
}

/// What a sub-path selects in a listing.
#[derive(Debug, PartialEq, Eq)]
pub enum Selection<'a> {
    /// The generators under the path (possibly none, for an empty directory).
    Generators(&'a [GeneratorFile]),
    /// Nothing by that name (or it is ignored).
    NotFound,
    /// A directory on the way could not be read: the list would be partial.
    Unreadable(&'a Skipped),
}

impl Listing {
    /// The generators that `sub` aggregates: all below a directory, or one file.
    pub fn select(&self, sub: &SubPath) -> Selection<'_> {
        if sub.components.iter().any(|c| is_ignored_name(c)) {
            return Selection::NotFound;
        }
        let rel = sub.as_rel();
        if let Some(bad) = self
            .unreadable
            .iter()
            .find(|u| is_under(&u.rel, &rel) || is_under(&rel, &u.rel))
        {
            return Selection::Unreadable(bad);
        }
        if self.dirs.contains(&rel) {
            let n = sub.components.len();
            let start = self
                .generators
                .partition_point(|g| prefix_cmp(&g.rel, &sub.components, n) == Ordering::Less);
            let end = start
                + self.generators[start..]
                    .partition_point(|g| prefix_cmp(&g.rel, &sub.components, n) == Ordering::Equal);
            return Selection::Generators(&self.generators[start..end]);
        }
        match self
            .generators
            .binary_search_by(|g| cmp_components(&g.rel, &rel))
        {
            Ok(i) => Selection::Generators(&self.generators[i..=i]),
            Err(_) => Selection::NotFound,
        }
    }
}

/// True when `path` is `dir` or lies below it (both root-relative).
fn is_under(path: &str, dir: &str) -> bool {
    dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
}

/// Compares the first `n` components of `rel` with `prefix`.
fn prefix_cmp(rel: &str, prefix: &[String], n: usize) -> Ordering {
    let head = rel.split('/').take(n);
    head.cmp(prefix.iter().map(String::as_str))
}

/// Percent-encodes each component of a `/`-separated relative path for a URL.
pub fn encode_path(rel: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    rel.split('/')
        .map(|c| percent_encoding::utf8_percent_encode(c, SET).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_refuses_traversal() {
        assert_eq!(SubPath::parse("a//b/").unwrap().as_rel(), "a/b");
        assert!(SubPath::parse("").unwrap().is_root());
        for bad in [
            "..", "a/../b", "%2e%2e", "%2E%2e/x", "a%2Fb", "a%5cb", "a%00", ".",
        ] {
            assert!(SubPath::parse(bad).is_err(), "{bad}");
        }
        // Double-encoded stays literal and simply will not match anything.
        assert_eq!(SubPath::parse("%252e%252e").unwrap().as_rel(), "%2e%2e");
    }

    #[test]
    fn component_order_is_tree_order() {
        let mut v = vec!["a.json", "a/b.json", "a-b/x.json", "b.json"];
        v.sort_by(|a, b| cmp_components(a, b));
        assert_eq!(v, ["a/b.json", "a-b/x.json", "a.json", "b.json"]);
    }
}
