//! The pipe protocol between the pool and its workers (one JSON object per line), and
//! the public description of a call that becomes a request.
//!
//! In: `{"id", "path", "params", "functions", "import", "env"}`, or a batch
//! `{"id", "batch": [path, ...], "functions", "import", "env"}` whose paths share the
//! rest. Out: the handshake `{"ready", "pid", "python", "executable"}`, then one
//! reply `{"id", "index"?, "ok", "result" | "message", "traceback", "recycle", "secs"}`
//! per call or per path of a batch, in order.

use std::sync::Arc;
use std::time::Duration;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use crate::error::PoolError;

/// Whether a module is imported again for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Import {
    /// A new module for every call (nothing survives from one call to the next).
    Fresh,
    /// Kept by each worker while the file and the modules it imported from under the
    /// root are unchanged; an edit anywhere under the root drops every such module.
    Cached,
    /// Imported once by a worker and kept for the worker's life, so module-level state
    /// accumulates across calls; imported again (new state) only when its own file
    /// changes. Each worker keeps its own copy: a pool of one worker keeps one state.
    Kept,
}

/// What a call runs in a module: shared by many calls, so it is built once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Function names tried in order: the first the module defines is called; the
    /// last one must be defined (and callable), or the call fails.
    pub functions: Vec<String>,
    /// How the module is imported.
    pub import: Import,
    /// Environment variables set while the module is imported and called.
    pub env: Vec<(String, String)>,
    /// `module:function` importable on the worker (a shim, say) called instead of the
    /// module's own function, as `host(path, load, params)` where `load()` imports the
    /// module as `import` says: a program adapts a module's contract (an exporter's
    /// collectors) without a second runner. `functions` is then unused.
    pub host: Option<String>,
}

impl Entry {
    /// Calls `function` of a module imported as `import`, with no extra environment.
    pub fn new(function: &str, import: Import) -> Entry {
        Entry {
            functions: vec![function.to_string()],
            import,
            env: Vec::new(),
            host: None,
        }
    }
}

/// One call: a module's function with keyword arguments.
#[derive(Debug, Clone)]
pub struct Call {
    /// The module's file (an absolute path).
    pub module: String,
    /// The call's name in messages and output attribution (e.g. the path under the root).
    pub name: String,
    /// What to call, and how.
    pub entry: Arc<Entry>,
    /// Keyword arguments, all strings, in order.
    pub params: Vec<(String, String)>,
    /// The call's deadline (`None`: the pool's `max_run_time`).
    pub deadline: Option<Duration>,
}

/// Ordered string pairs written as a JSON object (Python keeps the order).
struct Pairs<'a>(&'a [(String, String)]);

impl Serialize for Pairs<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// One call's request line.
#[derive(Serialize)]
pub(crate) struct Request<'a> {
    id: u64,
    path: &'a str,
    params: Pairs<'a>,
    functions: &'a [String],
    import: Import,
    env: Pairs<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
}

impl<'a> Request<'a> {
    pub fn new(id: u64, call: &'a Call) -> Request<'a> {
        Request {
            id,
            path: &call.module,
            params: Pairs(&call.params),
            functions: &call.entry.functions,
            import: call.entry.import,
            env: Pairs(&call.entry.env),
            host: call.entry.host.as_deref(),
        }
    }
}

/// A batch's request line: every path is called as `entry` says, without parameters.
#[derive(Serialize)]
pub(crate) struct BatchRequest<'a> {
    id: u64,
    batch: Vec<&'a str>,
    functions: &'a [String],
    import: Import,
    env: Pairs<'a>,
}

impl<'a> BatchRequest<'a> {
    pub fn new(id: u64, batch: Vec<&'a str>, entry: &'a Entry) -> BatchRequest<'a> {
        BatchRequest {
            id,
            batch,
            functions: &entry.functions,
            import: entry.import,
            env: Pairs(&entry.env),
        }
    }
}

/// A worker's answer to one request.
#[derive(Deserialize)]
pub(crate) struct Reply {
    pub id: u64,
    /// The position in its batch (batches only).
    #[serde(default)]
    pub index: Option<usize>,
    pub ok: bool,
    /// Kept as the worker wrote it: a caller that encodes it in one pass never
    /// builds a tree of it (see [`parse_result`]).
    #[serde(default)]
    pub result: Option<Box<RawValue>>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub traceback: Option<String>,
    /// The worker hit `MemoryError`: it must not run another call.
    #[serde(default)]
    pub recycle: bool,
    /// The script's own time in the worker (import, call, JSON encoding).
    #[serde(default)]
    pub secs: f64,
}

impl Reply {
    /// The call's value as the worker wrote it, or its error.
    pub fn into_result(self, name: &str) -> Result<Box<RawValue>, PoolError> {
        if self.ok {
            return self.result.ok_or_else(|| PoolError::NoResult {
                name: name.to_string(),
            });
        }
        Err(PoolError::Exception {
            name: name.to_string(),
            message: self.message.unwrap_or_else(|| "unknown error".into()),
            traceback: self.traceback,
        })
    }
}

/// A call's result (as [`crate::Pool::call_raw`] returns it) read as a tree.
///
/// The reply line was already checked to be JSON; this fails only for a value nested
/// deeper than `serde_json`'s recursion limit.
pub fn parse_result(name: &str, raw: &RawValue) -> Result<serde_json::Value, PoolError> {
    serde_json::from_str(raw.get()).map_err(|e| PoolError::Unreadable {
        name: name.to_string(),
        reason: e.to_string(),
    })
}

/// The handshake line of a worker.
#[derive(Debug, Clone, Deserialize)]
pub struct Hello {
    /// Always true (tells the handshake from other output).
    pub ready: bool,
    /// The worker's process id (how the pool learns a forked copy's).
    pub pid: i32,
    /// Python's version (`3.12.3`).
    pub python: String,
    /// `sys.executable`.
    pub executable: String,
}

/// One protocol line: the request as JSON and a newline.
pub(crate) fn request_line(request: &impl Serialize) -> serde_json::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    Ok(line)
}

/// Reads one line (without the newline) of at most `limit` bytes. `Ok(true)` when
/// a whole line was read; `Ok(false)` at end of input or when the line is too long.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: u64,
) -> std::io::Result<bool> {
    let n = reader.take(limit).read_until(b'\n', buf).await?;
    if n > 0 && buf.last() == Some(&b'\n') {
        buf.pop();
        Ok(true)
    } else {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(result: &str) -> Reply {
        let line = format!(r#"{{"id": 1, "ok": true, "result": {result}, "secs": 0.5}}"#);
        serde_json::from_str(&line).expect("a reply")
    }

    #[test]
    fn the_result_is_kept_as_written() {
        let raw = reply(r#"[{"targets": ["a:1"], "labels": {"z": "1", "a": "2"}}]"#)
            .into_result("g")
            .expect("a result");
        assert_eq!(
            raw.get(),
            r#"[{"targets": ["a:1"], "labels": {"z": "1", "a": "2"}}]"#
        );
        assert_eq!(
            parse_result("g", &raw).expect("a tree"),
            serde_json::json!([{"targets": ["a:1"], "labels": {"a": "2", "z": "1"}}])
        );
    }

    #[test]
    fn a_null_result_is_no_result() {
        assert_eq!(
            reply("null").into_result("g").unwrap_err(),
            PoolError::NoResult { name: "g".into() }
        );
    }

    #[test]
    fn a_result_too_deep_for_a_tree_is_a_clear_error() {
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        let raw = reply(&deep).into_result("g").expect("read as written");
        let e = parse_result("g", &raw).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("g: the Python worker's result cannot be read (recursion limit"),
            "{e}"
        );
    }
}
