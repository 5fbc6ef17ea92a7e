//! Static generators (`.json`, `.yaml`, `.yml`): read once, validated, serialised and
//! kept in memory until the file changes on disk.
//!
//! A file caught half-written must never yield a partial list, so a changed file is
//! only (re)loaded once it has been quiet for [`SETTLE`] (both when scanned and when
//! opened) and did not change while we read it. Until then the previous version keeps
//! being served (or, for a new file, the file is not part of the tree yet).
//!
//! A read that fails (empty, truncated, invalid, unreadable) is what a writer that
//! truncates in place and then stalls looks like, so it is only believed once the file
//! has been invalid for [`INVALID_GRACE`]: counted from our first invalid read of that
//! version of the file (our clock) or from the version's mtime, whichever is older.
//! Until then the last good version keeps being served, and a file never loaded stays
//! out of the tree. A file rewritten again restarts the count: one that changes faster
//! than the grace period and is caught half-written each time keeps its last good
//! version for as long as it churns.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::encode;
use crate::error::{ErrorKind, GeneratorError};
use crate::tree::{FileStamp, GeneratorFile, GeneratorKind};
use crate::validate::{self, GeneratorOutput};

/// How long a changed file must stay unchanged before we trust its content.
pub const SETTLE: Duration = Duration::from_millis(200);

/// How long a file that was valid and now is not keeps serving its last good
/// version: a writer that stalls between truncating and writing (a loaded machine)
/// must not turn a rewrite into a failed path. A real mistake shows after this.
pub const INVALID_GRACE: Duration = Duration::from_secs(2);

/// The outcome of loading one static file.
pub type StaticResult = Result<Arc<GeneratorOutput>, GeneratorError>;

/// Loaded static files by relative path.
#[derive(Debug, Default)]
pub struct StaticStore {
    loaded: HashMap<String, Loaded>,
    /// When each file that reads invalid was first read invalid, and the version then
    /// read: a new version restarts the count, a good read clears it.
    invalid_since: HashMap<String, (SystemTime, FileStamp)>,
    max_size: u64,
}

#[derive(Debug, Clone)]
struct Loaded {
    stamp: FileStamp,
    result: StaticResult,
}

/// What one attempt to load a file gave.
enum Attempt {
    /// A consistent read of a settled file, valid or not.
    Read(FileStamp, StaticResult),
    /// The file changed, or had not settled, when opened: look again after this.
    Unsettled(Duration),
}

impl StaticStore {
    /// An empty store refusing files larger than `max_size` bytes.
    pub fn new(max_size: u64) -> StaticStore {
        StaticStore {
            loaded: HashMap::new(),
            invalid_since: HashMap::new(),
            max_size,
        }
    }

    /// Brings the store up to date with `files` (the static generators of a scan).
    ///
    /// Returns how soon a file that is still settling should be looked at again.
    pub fn refresh<'a>(
        &mut self,
        files: impl Iterator<Item = &'a GeneratorFile>,
        now: SystemTime,
    ) -> Option<Duration> {
        let mut seen = std::collections::HashSet::new();
        let mut recheck: Option<Duration> = None;
        let mut again = |wait: Duration| recheck = Some(recheck.map_or(wait, |r| r.min(wait)));
        let mut loaded_bytes = 0usize;
        for f in files {
            seen.insert(f.rel.clone());
            if self.loaded.get(&f.rel).is_some_and(|l| l.stamp == f.stamp) {
                continue;
            }
            let age = age_of(f.stamp.mtime_ns, now);
            if age < SETTLE {
                again(SETTLE - age + Duration::from_millis(10));
                continue;
            }
            loaded_bytes = loaded_bytes.saturating_add(usize::try_from(f.stamp.size).unwrap_or(0));
            let (stamp, result) = match load(f, self.max_size, now) {
                Attempt::Unsettled(wait) => {
                    again(wait);
                    continue;
                }
                Attempt::Read(stamp, result) => (stamp, result),
            };
            match &result {
                Ok(_) => {
                    self.invalid_since.remove(&f.rel);
                    if self.loaded.contains_key(&f.rel) {
                        tracing::info!(generator = %f.rel, "static generator reloaded");
                    }
                }
                Err(e) => {
                    // A new version restarts the count: a file rewritten faster than the
                    // grace period and caught half-written each time was valid in between
                    // (we just never saw it quiet), and must not turn into an error.
                    let streak = self
                        .invalid_since
                        .entry(f.rel.clone())
                        .or_insert((now, stamp));
                    if streak.1 != stamp {
                        *streak = (now, stamp);
                    }
                    let since = streak.0;
                    let invalid_for = now
                        .duration_since(since)
                        .unwrap_or_default()
                        .max(age_of(stamp.mtime_ns, now));
                    if invalid_for < INVALID_GRACE {
                        // Probably being written: keep what we serve, look again.
                        again(INVALID_GRACE - invalid_for + Duration::from_millis(10));
                        continue;
                    }
                    tracing::warn!(generator = %f.rel, error = %e, "static generator is invalid");
                }
            }
            self.loaded.insert(f.rel.clone(), Loaded { stamp, result });
        }
        self.loaded.retain(|rel, _| seen.contains(rel));
        self.invalid_since.retain(|rel, _| seen.contains(rel));
        // The files' bytes (and any tree) are freed by now: give the pages back.
        crate::mem::trim_after(loaded_bytes);
        recheck
    }

    /// The loaded result for `rel`, if the file has settled at least once.
    pub fn get(&self, rel: &str) -> Option<&StaticResult> {
        self.loaded.get(rel).map(|l| &l.result)
    }
}

fn age_of(mtime_ns: i128, now: SystemTime) -> Duration {
    let now_ns = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    let diff = now_ns - mtime_ns;
    if diff <= 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(u64::try_from(diff).unwrap_or(u64::MAX))
    }
}

/// Reads and validates one file, unless it changes while read or was rewritten (and
/// so has not settled) since the scan saw it.
fn load(f: &GeneratorFile, max_size: u64, now: SystemTime) -> Attempt {
    let read_error =
        |stamp, kind, message| Attempt::Read(stamp, Err(GeneratorError::new(kind, message)));
    let mut file = match fs::File::open(&f.abs) {
        Ok(file) => file,
        Err(e) => {
            return read_error(
                f.stamp,
                ErrorKind::Read,
                format!("cannot open {}: {e}", f.rel),
            );
        }
    };
    let Ok(before) = file.metadata().map(|m| FileStamp::of(&m)) else {
        return Attempt::Unsettled(SETTLE);
    };
    // The scan's stamp had settled, but a writer may have truncated the file since:
    // what we opened must have settled too, or a half-written file would be read.
    let age = age_of(before.mtime_ns, now.max(SystemTime::now()));
    if age < SETTLE {
        return Attempt::Unsettled(SETTLE - age + Duration::from_millis(10));
    }
    if before.size > max_size {
        return read_error(
            before,
            ErrorKind::TooLarge,
            format!(
                "{} is {} bytes, more than the limit of {} bytes (--max-file-size)",
                f.rel, before.size, max_size
            ),
        );
    }
    let mut bytes = Vec::with_capacity(usize::try_from(before.size).unwrap_or(0));
    // Read one byte past the limit so a file that grows while read is still caught.
    if let Err(e) = (&mut file).take(max_size + 1).read_to_end(&mut bytes) {
        return read_error(
            before,
            ErrorKind::Read,
            format!("cannot read {}: {e}", f.rel),
        );
    }
    let after = fs::metadata(&f.abs).map(|m| FileStamp::of(&m)).ok();
    if after != Some(before) || bytes.len() as u64 != before.size {
        return Attempt::Unsettled(SETTLE);
    }
    Attempt::Read(before, parse_static(&f.rel, f.kind, &bytes))
}

/// Parses and validates the content of a static generator.
///
/// JSON goes through the one-pass encoder (no tree, see `encode`); only a document it
/// declines (an invalid one, mostly) is parsed into a tree, for the exact error. What
/// the encoder accepts is valid UTF-8, not blank and valid under the serve profile, so
/// both ways give the same bytes.
pub fn parse_static(rel: &str, kind: GeneratorKind, bytes: &[u8]) -> StaticResult {
    if kind == GeneratorKind::Json
        && let Some(output) = encode::encode_json(bytes)
    {
        return Ok(Arc::new(output));
    }
    let value = parse_value(rel, kind, bytes)?;
    // A YAML tree is unavoidable while parsing; it is dropped as soon as it is encoded.
    let output = encode::encode_value(&value).map(Arc::new);
    match output {
        Some(output) => Ok(output),
        None => validate::into_output(&value, &validate::Profile::SERVE)
            .map_err(|e| GeneratorError::new(ErrorKind::Invalid, format!("{rel}: {}", e.summary))),
    }
}

/// Parses JSON or YAML content into a generic value (types are checked later).
pub fn parse_value(rel: &str, kind: GeneratorKind, bytes: &[u8]) -> Result<Value, GeneratorError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(GeneratorError::new(
            ErrorKind::Empty,
            format!("{rel} is empty; write [] for a path with no targets"),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        GeneratorError::new(
            ErrorKind::Parse,
            format!("{rel} is not UTF-8 text (binary file?): {e}"),
        )
    })?;
    match kind {
        GeneratorKind::Json => serde_json::from_str(text).map_err(|e| {
            GeneratorError::new(ErrorKind::Parse, format!("{rel}: invalid JSON: {e}"))
        }),
        GeneratorKind::Yaml => {
            let yaml: yaml_serde::Value = yaml_serde::from_str(text).map_err(|e| {
                GeneratorError::new(ErrorKind::Parse, format!("{rel}: invalid YAML: {e}"))
            })?;
            yaml_to_json(yaml).map_err(|e| {
                GeneratorError::new(ErrorKind::Parse, format!("{rel}: unsupported YAML: {e}"))
            })
        }
        other => Err(GeneratorError::new(
            ErrorKind::Internal,
            format!("{rel}: {other:?} is not a static generator"),
        )),
    }
}

/// Converts YAML to JSON values; only string keys are meaningful for target groups.
fn yaml_to_json(v: yaml_serde::Value) -> Result<Value, String> {
    use yaml_serde::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(seq) => Value::Array(
            seq.into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => return Err(format!("mapping key {other:?} is not a string")),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => return Err(format!("YAML tag {} is not supported", t.tag)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `content` to `path` with the given mtime and returns its scanned entry.
    fn write_at(dir: &std::path::Path, content: &str, mtime: SystemTime) -> GeneratorFile {
        let abs = dir.join("f.json");
        fs::write(&abs, content).unwrap();
        let file = fs::File::options().write(true).open(&abs).unwrap();
        file.set_modified(mtime).unwrap();
        let stamp = FileStamp::of(&fs::metadata(&abs).unwrap());
        GeneratorFile {
            rel: "f.json".into(),
            abs,
            kind: GeneratorKind::Json,
            stamp,
        }
    }

    /// The soak run's defect: a file rewritten in place every 100 ms and caught
    /// half-written at each stall was believed invalid, because the count of its first
    /// invalid read was never restarted by the (unseen) valid versions in between.
    #[test]
    fn a_rewritten_file_restarts_the_invalid_count() {
        let dir = tempfile::tempdir().unwrap();
        let t = SystemTime::now();
        let secs = Duration::from_secs_f64;
        let mut store = StaticStore::new(1 << 20);
        let half = write_at(dir.path(), "[{\"targets\": [\"a:1", t - secs(1.0));
        store.refresh(std::iter::once(&half), t);
        assert!(
            store.get("f.json").is_none(),
            "first invalid read is not believed"
        );
        // Rewritten (valid in between, never quiet long enough to be read), caught half
        // written again 2.5 s after the first invalid read.
        let again = write_at(dir.path(), "[{\"targets\": [\"b:", t + secs(2.0));
        store.refresh(std::iter::once(&again), t + secs(2.5));
        assert!(
            store.get("f.json").is_none(),
            "a new version restarts the count"
        );
        // The same invalid version, still there past the grace period: an error.
        store.refresh(std::iter::once(&again), t + secs(4.6));
        let err = store.get("f.json").expect("reported").as_ref().unwrap_err();
        assert!(err.message.contains("invalid JSON"), "{}", err.message);
    }

    #[test]
    fn yaml_and_json_agree() {
        let y = parse_static(
            "a.yaml",
            GeneratorKind::Yaml,
            b"- targets: ['a:1']\n  labels: {job: node}\n",
        )
        .unwrap();
        let j = parse_static(
            "a.json",
            GeneratorKind::Json,
            br#"[{"targets":["a:1"],"labels":{"job":"node"}}]"#,
        )
        .unwrap();
        assert_eq!(y, j);
        assert_eq!(
            parse_static("e.json", GeneratorKind::Json, b" \n")
                .unwrap_err()
                .kind,
            ErrorKind::Empty
        );
        assert_eq!(
            parse_static("e.yaml", GeneratorKind::Yaml, b"a: [")
                .unwrap_err()
                .kind,
            ErrorKind::Parse
        );
        assert_eq!(
            parse_static("b.json", GeneratorKind::Json, b"\xff\xfe")
                .unwrap_err()
                .kind,
            ErrorKind::Parse
        );
        assert_eq!(
            parse_static("d.json", GeneratorKind::Json, b"{}")
                .unwrap_err()
                .kind,
            ErrorKind::Invalid
        );
    }
}
