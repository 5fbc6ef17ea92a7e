//! The pipe protocol between the pool and its workers (one JSON object per line), and
//! the public description of a call that becomes a request.
//!
//! In: `{"id", "path", "params", "functions", "import", "env"}`, or a batch
//! `{"id", "batch": [path, ...], "functions", "import", "env"}` whose paths share the
//! rest. Out: the handshake `{"ready", "pid", "python", "executable"}`, then one
//! reply `{"id", "index"?, "ok", "size" | "message", "traceback", "recycle", "secs"}`
//! per call or per path of a batch, in order. A successful reply's line is followed by
//! `size` bytes, the result's JSON: read straight into a buffer of that size, it is
//! neither searched for a newline nor copied again (a big result is tens of MiB).

use std::sync::Arc;
use std::time::Duration;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
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
}

impl Entry {
    /// Calls `function` of a module imported as `import`, with no extra environment.
    pub fn new(function: &str, import: Import) -> Entry {
        Entry {
            functions: vec![function.to_string()],
            import,
            env: Vec::new(),
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
    /// The length of the result's JSON, which follows the line (successful replies).
    #[serde(default)]
    pub size: Option<usize>,
    /// The result, once read after the line ([`read_reply`]).
    #[serde(skip)]
    pub result: Option<RawResult>,
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

/// A call's value as the JSON text the worker's encoder wrote (Python's own `json`
/// code), kept as bytes: a caller that validates while it reads (httpsd's one-pass
/// encoder, [`parse_result`]) checks it then, so it is not checked twice.
#[derive(Debug, Clone, PartialEq)]
pub struct RawResult {
    json: Vec<u8>,
    script_seconds: f64,
}

impl RawResult {
    /// The value's JSON text.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// The script's own time in the worker: import, call and JSON encoding (what the
    /// worker measured; the rest of a call's time is the pool's and the pipe's).
    pub fn script_seconds(&self) -> f64 {
        self.script_seconds
    }
}

impl Reply {
    /// The call's value as the worker wrote it, or its error.
    pub fn into_result(self, name: &str) -> Result<RawResult, PoolError> {
        if self.ok {
            return match self.result {
                Some(r) if r.json.as_slice() != b"null" => Ok(r),
                _ => Err(PoolError::NoResult {
                    name: name.to_string(),
                }),
            };
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
/// The worker writes it with Python's `json` encoder, so this fails only for a value
/// nested deeper than `serde_json`'s recursion limit (or a worker that broke the
/// protocol).
pub fn parse_result(name: &str, raw: &RawResult) -> Result<serde_json::Value, PoolError> {
    serde_json::from_slice(raw.json()).map_err(|e| PoolError::Unreadable {
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

/// What [`read_reply`] read.
pub(crate) enum Received {
    /// A whole reply (with its result, for a successful one).
    Reply(Reply),
    /// The end of input before a reply started.
    Closed,
    /// Something that is not the protocol.
    Bad(String),
}

/// Reads one reply: its line (at most `limit` bytes) and, for a successful one, the
/// `size` bytes of its result after it, at most `max_result`.
pub(crate) async fn read_reply<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limit: u64,
    max_result: usize,
) -> std::io::Result<Received> {
    let mut line = Vec::with_capacity(256);
    if !read_line(reader, &mut line, limit).await? {
        return Ok(if line.is_empty() {
            Received::Closed
        } else {
            Received::Bad("reply too large or cut short".into())
        });
    }
    let mut reply = match serde_json::from_slice::<Reply>(&line) {
        Ok(r) => r,
        Err(e) => return Ok(Received::Bad(format!("unreadable reply: {e}"))),
    };
    if let Some(size) = reply.size {
        if size > max_result {
            return Ok(Received::Bad(format!(
                "a result of {size} bytes, more than the limit of {max_result}"
            )));
        }
        // Zeroed memory comes from the system already zeroed (no pass over it), and
        // a read this big bypasses the reader's buffer: the pipe's bytes are copied
        // once, into their final place.
        let mut json = vec![0u8; size];
        reader.read_exact(&mut json).await?;
        reply.result = Some(RawResult {
            json,
            script_seconds: reply.secs,
        });
    }
    Ok(Received::Reply(reply))
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

    /// Reads `input` as the worker's output, with the pool's limits.
    async fn read(input: &[u8]) -> std::io::Result<Received> {
        read_reply(&mut &input[..], 4096, 1024).await
    }

    async fn reply(result: &str) -> Reply {
        let input = format!(
            "{{\"id\": 1, \"ok\": true, \"size\": {}, \"secs\": 0.5}}\n{result}",
            result.len()
        );
        match read(input.as_bytes()).await.expect("no I/O error") {
            Received::Reply(r) => r,
            _ => panic!("not a reply"),
        }
    }

    #[tokio::test]
    async fn the_result_is_kept_as_written() {
        let raw = reply(r#"[{"targets": ["a:1"], "labels": {"z": "1", "a": "2"}}]"#)
            .await
            .into_result("g")
            .expect("a result");
        assert_eq!(
            raw.json(),
            br#"[{"targets": ["a:1"], "labels": {"z": "1", "a": "2"}}]"#
        );
        assert_eq!(raw.script_seconds(), 0.5);
        assert_eq!(
            parse_result("g", &raw).expect("a tree"),
            serde_json::json!([{"targets": ["a:1"], "labels": {"a": "2", "z": "1"}}])
        );
    }

    #[tokio::test]
    async fn a_null_result_is_no_result() {
        assert_eq!(
            reply("null").await.into_result("g").unwrap_err(),
            PoolError::NoResult { name: "g".into() }
        );
    }

    #[tokio::test]
    async fn a_result_too_deep_for_a_tree_is_a_clear_error() {
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        let raw = reply(&deep)
            .await
            .into_result("g")
            .expect("read as written");
        let e = parse_result("g", &raw).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("g: the Python worker's result cannot be read (recursion limit"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn replies_follow_each_other_and_the_end_is_seen() {
        let input = b"{\"id\":1,\"ok\":true,\"secs\":0.1,\"size\":2}\n[]{\"id\":2,\"ok\":false,\"message\":\"boom\"}\n";
        let mut reader = &input[..];
        let Received::Reply(first) = read_reply(&mut reader, 4096, 1024).await.unwrap() else {
            panic!("not a reply")
        };
        assert_eq!(first.into_result("g").unwrap().json(), b"[]");
        let Received::Reply(second) = read_reply(&mut reader, 4096, 1024).await.unwrap() else {
            panic!("not a reply")
        };
        assert!(matches!(
            second.into_result("g"),
            Err(PoolError::Exception { message, .. }) if message == "boom"
        ));
        assert!(matches!(
            read_reply(&mut reader, 4096, 1024).await.unwrap(),
            Received::Closed
        ));
    }

    #[tokio::test]
    async fn a_bad_reply_is_a_clear_error() {
        let bad = |r: std::io::Result<Received>| match r {
            Ok(Received::Bad(why)) => why,
            _ => panic!("not rejected"),
        };
        assert!(bad(read(b"not json\n").await).starts_with("unreadable reply"));
        assert_eq!(
            bad(read(b"{\"id\":1,\"ok\":true").await),
            "reply too large or cut short"
        );
        assert_eq!(
            bad(read(b"{\"id\":1,\"ok\":true,\"size\":2000}\n").await),
            "a result of 2000 bytes, more than the limit of 1024"
        );
        // A result cut short: the worker died while writing it.
        let cut = read(b"{\"id\":1,\"ok\":true,\"size\":10}\n[1,").await;
        assert_eq!(
            cut.err().map(|e| e.kind()),
            Some(std::io::ErrorKind::UnexpectedEof)
        );
    }
}
