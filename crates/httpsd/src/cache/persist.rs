//! Last good generator results on disk (`--cache-dir`), so that a restarted server
//! answers at once. One file per (generator, parameters), written atomically (temporary
//! file, then rename); a file that cannot be read back (truncated, corrupt, another
//! format) is ignored with a warning and never crashes or blocks startup.
//!
//! File content (one JSON object; `results` is what the generator returned):
//! `{"format":"httpsd-cache/1","generator":"sub/gen.py","params":[["k","v"]],
//! "stamp":{...},"updated_timestamp":1795338584.93,"results":[...]}`

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::key::RunKey;
use crate::params::Params;
use crate::tree::FileStamp;
use crate::validate::{self, GeneratorOutput};

/// The `format` marker of our files.
pub const FORMAT: &str = "httpsd-cache/1";

/// A directory of persisted results.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    seq: AtomicU64,
}

/// One result read back from disk.
#[derive(Debug)]
pub struct Persisted {
    /// The file it came from.
    pub file: PathBuf,
    /// Generator path relative to the root.
    pub generator: String,
    /// Canonical parameters.
    pub params: Params,
    /// The generator's file stamp when it ran.
    pub stamp: FileStamp,
    /// When the result was obtained.
    pub updated: SystemTime,
    /// The validated result.
    pub output: Arc<GeneratorOutput>,
}

impl DiskStore {
    /// Opens (creating it if needed) `dir`, and removes temporary files left by a crash.
    pub fn open(dir: &Path) -> std::io::Result<DiskStore> {
        fs::create_dir_all(dir)?;
        // Fail now, not at the first write, when the directory is not writable.
        let probe = dir.join(format!(".probe.{}.tmp", std::process::id()));
        fs::write(&probe, b"")?;
        let _ = fs::remove_file(&probe);
        for e in fs::read_dir(dir)?.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(DiskStore {
            dir: dir.to_path_buf(),
            seq: AtomicU64::new(0),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding `key`'s result: a 128-bit hash of generator path and parameters.
    pub fn path_of(&self, key: &RunKey) -> PathBuf {
        let mut text = key.generator.rel.clone();
        for (k, v) in key.params.pairs() {
            text.push('\0');
            text.push_str(k);
            text.push('\0');
            text.push_str(v);
        }
        let a = fnv1a64(0xcbf2_9ce4_8422_2325, text.as_bytes());
        let b = fnv1a64(0x6c62_272e_07bb_0142, text.as_bytes());
        self.dir.join(format!("{a:016x}{b:016x}.json"))
    }

    /// Writes `key`'s result atomically.
    pub fn save(
        &self,
        key: &RunKey,
        output: &GeneratorOutput,
        at: SystemTime,
    ) -> std::io::Result<()> {
        let s = key.generator.stamp;
        let header = json!({
            "format": FORMAT,
            "generator": key.generator.rel,
            "params": key.params.pairs(),
            "stamp": {
                "dev": s.dev,
                "ino": s.ino,
                "size": s.size,
                "mtime_ns": s.mtime_ns.to_string(),
                "ctime_ns": s.ctime_ns.to_string(),
            },
            "updated_timestamp": at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64(),
        });
        let mut bytes = serde_json::to_vec(&header)?;
        // Replace the closing brace by the results, written from the stored bytes.
        bytes.pop();
        bytes.extend_from_slice(b",\"results\":[");
        bytes.extend_from_slice(&output.groups_json);
        bytes.extend_from_slice(b"]}\n");
        let target = self.path_of(key);
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            // No fsync: every entry is rewritten each cache_time, and a file left empty
            // or truncated by a power loss is only a cache miss (ignored with a warning).
            fs::rename(&tmp, &target)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Removes `key`'s file, if any.
    pub fn remove(&self, key: &RunKey) {
        self.remove_file(&self.path_of(key));
    }

    /// Removes a file of this store.
    pub fn remove_file(&self, path: &Path) {
        if let Err(e) = fs::remove_file(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(file = %path.display(), error = %e, "cannot remove a persisted result");
        }
    }

    /// Reads up to `max` results; unreadable files are skipped with a warning.
    pub fn load_all(&self, max: usize) -> Vec<Persisted> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the cache directory; starting empty");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            if out.len() >= max {
                tracing::warn!(dir = %self.dir.display(), max, "more persisted results than --cache-max-entries; the rest are ignored");
                break;
            }
            match read_one(&path) {
                Ok(p) => out.push(p),
                Err(why) => {
                    tracing::warn!(file = %path.display(), reason = %why, "ignoring an unreadable persisted result");
                }
            }
        }
        out
    }
}

/// A persisted file read without a tree of its results (issue 19): the small header
/// fields as values, the results encoded as they are read.
#[derive(serde::Deserialize)]
struct Encoded {
    format: Value,
    generator: Value,
    params: Value,
    stamp: Value,
    updated_timestamp: Value,
    #[serde(deserialize_with = "crate::encode::deserialize_output")]
    results: GeneratorOutput,
}

fn read_one(path: &Path) -> Result<Persisted, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    // The one-pass way first; any file it does not take is read as a tree, which
    // gives the exact reason it is refused.
    let (v, encoded) = match serde_json::from_slice::<Encoded>(&bytes) {
        Ok(e) => (
            json!({"format": e.format, "generator": e.generator, "params": e.params,
                   "stamp": e.stamp, "updated_timestamp": e.updated_timestamp}),
            Some(Arc::new(e.results)),
        ),
        Err(_) => (
            serde_json::from_slice(&bytes).map_err(|e| format!("not valid JSON: {e}"))?,
            None,
        ),
    };
    drop(bytes);
    if v.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(format!("not an {FORMAT} file"));
    }
    let field = |name: &str| v.get(name).ok_or_else(|| format!("no {name:?} field"));
    let generator = field("generator")?
        .as_str()
        .ok_or("\"generator\" is not a string")?
        .to_string();
    let mut pairs = Vec::new();
    for p in field("params")?
        .as_array()
        .ok_or("\"params\" is not a list")?
    {
        match p.as_array().map(Vec::as_slice) {
            Some([Value::String(k), Value::String(v)]) => pairs.push((k.clone(), v.clone())),
            _ => return Err("\"params\" holds something other than [key, value] pairs".into()),
        }
    }
    let s = field("stamp")?;
    let u = |n: &str| {
        s.get(n)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("bad stamp field {n:?}"))
    };
    let i = |n: &str| {
        s.get(n)
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<i128>().ok())
            .ok_or_else(|| format!("bad stamp field {n:?}"))
    };
    let stamp = FileStamp {
        dev: u("dev")?,
        ino: u("ino")?,
        size: u("size")?,
        mtime_ns: i("mtime_ns")?,
        ctime_ns: i("ctime_ns")?,
    };
    let ts = field("updated_timestamp")?
        .as_f64()
        .filter(|t| t.is_finite() && *t >= 0.0)
        .ok_or("bad \"updated_timestamp\"")?;
    let updated = UNIX_EPOCH
        .checked_add(Duration::from_secs_f64(ts))
        .ok_or("bad \"updated_timestamp\"")?;
    let output = match encoded {
        Some(output) => output,
        None => validate::into_output(field("results")?, &validate::Profile::SERVE)
            .map_err(|e| format!("results are not valid target groups: {}", e.summary))?,
    };
    Ok(Persisted {
        file: path.to_path_buf(),
        generator,
        params: Params::from_pairs(pairs),
        stamp,
        updated,
        output,
    })
}

fn fnv1a64(seed: u64, data: &[u8]) -> u64 {
    let mut h = seed;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::GeneratorKind;

    fn key(params: &[(&str, &str)]) -> RunKey {
        RunKey::new(
            crate::tree::GeneratorFile {
                rel: "sub/gen.py".into(),
                abs: PathBuf::from("/r/sub/gen.py"),
                kind: GeneratorKind::Python,
                stamp: FileStamp {
                    dev: 1,
                    ino: 2,
                    size: 3,
                    mtime_ns: 1_795_338_584_939_247_800,
                    ctime_ns: 5,
                },
            },
            &Params::from_pairs(params.iter().copied()),
        )
    }

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let out = validate::into_output(
            &json!([{"targets": ["a:1"], "labels": {"x": "é"}}]),
            &validate::Profile::SERVE,
        )
        .unwrap();
        let k = key(&[("b", "2"), ("a", "1")]);
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        store.save(&k, &out, at).unwrap();
        // Parameter order does not matter.
        assert_eq!(
            store.path_of(&k),
            store.path_of(&key(&[("a", "1"), ("b", "2")]))
        );
        assert_ne!(store.path_of(&k), store.path_of(&key(&[("a", "1")])));
        let all = store.load_all(10);
        assert_eq!(all.len(), 1);
        let p = &all[0];
        assert_eq!(p.generator, "sub/gen.py");
        assert_eq!(p.params, k.params);
        assert_eq!(p.stamp, k.generator.stamp);
        assert_eq!(p.updated, at);
        assert_eq!(*p.output, *out);
        // Truncated and garbage files are skipped, the good one still loads.
        let bytes = fs::read(store.path_of(&k)).unwrap();
        fs::write(dir.path().join("truncated.json"), &bytes[..bytes.len() / 2]).unwrap();
        fs::write(dir.path().join("garbage.json"), b"\x00\xffnot json").unwrap();
        fs::write(
            dir.path().join("invalid.json"),
            String::from_utf8_lossy(&bytes).replace("\"a:1\"", "1"),
        )
        .unwrap();
        assert_eq!(store.load_all(10).len(), 1);
        // A repeated label (the one-pass reader declines it) still loads, with its
        // last value, as it did when every file was read as a tree.
        fs::remove_file(dir.path().join("invalid.json")).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(text.contains("{\"x\":"), "{text}");
        fs::write(
            store.path_of(&k),
            text.replace("{\"x\":", "{\"x\":\"first\",\"x\":"),
        )
        .unwrap();
        let all = store.load_all(10);
        assert_eq!(all.len(), 1, "{text}");
        assert_eq!(*all[0].output, *out);
        store.remove(&k);
        assert!(store.load_all(10).is_empty());
    }
}
