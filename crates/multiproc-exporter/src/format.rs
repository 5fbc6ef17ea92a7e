//! The on-disk format of `prometheus_client` 0.26.x multiprocess `.db` files: file names,
//! the byte layout (reading, torn-entry-safe), and a byte-exact writer.
//!
//! Layout (native order, little-endian on every supported host): `i32 used` at offset 0,
//! 4 zero bytes, then entries from offset 8: `i32 keylen`, the UTF-8 JSON key, 1..=8 spaces
//! so that the value is 8-aligned (8 when it already is), `f64 value`, `f64 timestamp`.
//! Files start at 64 KiB (sparse) and double. The writer appends an entry before it bumps
//! `used`, so a reader that reads `used` first and stops there never sees a torn entry.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// Offset of the first entry (the `used` header plus 4 bytes of padding).
pub const HEADER_LEN: usize = 8;
/// Size of a freshly created file (`_INITIAL_MMAP_SIZE` in `mmap_dict.py`).
pub const INITIAL_SIZE: u64 = 1 << 16;
/// Bytes read first, like Python's `read(mmap.PAGESIZE)`.
const FIRST_READ: usize = 4096;

/// Why a `.db` file could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The `used` header is negative, not 8-aligned or smaller than the header.
    #[error("bad `used` header {0}")]
    BadUsed(i64),
    /// The header claims more bytes than the file holds.
    #[error("`used` header {used} is beyond the end of the file ({len} bytes)")]
    Truncated {
        /// The header value.
        used: usize,
        /// Bytes actually present.
        len: usize,
    },
    /// An entry runs past `used` (Python: "Read beyond file size detected").
    #[error("entry at offset {0} runs beyond `used`")]
    EntryBeyondUsed(usize),
    /// A key is not valid UTF-8.
    #[error("key at offset {0} is not UTF-8")]
    KeyNotUtf8(usize),
    /// A key is neither the 4-element JSON array of prometheus_client >= 0.16 nor the
    /// fork's 3-element one.
    #[error("key at offset {offset} is not a valid key: {reason}")]
    BadKey {
        /// Offset of the entry.
        offset: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What a `.db` file name says, parsed exactly like `MultiProcessCollector` does
/// (`basename.split('_')`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbName {
    /// `parts[0]`: the metric type (`counter`, `gauge`, `histogram`, `summary`, ...), one
    /// of [`METRIC_TYPES`] (a `&'static str`: a 16,000-file directory keeps one per file).
    pub typ: &'static str,
    /// `parts[1]` for gauge files: the multiprocess mode.
    pub mode: Option<Box<str>>,
    /// `parts[2][:-3]` for gauge files: the value of the `pid` label Python adds.
    pub pid_label: Option<Box<str>>,
    /// The numeric process id that owns the file (`<prefix>_<pid>.db`), if there is one.
    pub owner_pid: Option<i32>,
}

/// The metric types Python's `Metric` accepts (`untyped` is renamed to `unknown`).
pub const METRIC_TYPES: &[&str] = &[
    "counter",
    "gauge",
    "summary",
    "histogram",
    "gaugehistogram",
    "unknown",
    "info",
    "stateset",
];

/// The [`METRIC_TYPES`] entry equal to `typ`.
fn known_type(typ: &str) -> Option<&'static str> {
    METRIC_TYPES.iter().find(|t| **t == typ).copied()
}

impl DbName {
    /// Parses a base name; `None` for names upstream would not glob (no `.db`, dot-files)
    /// or no reader could use (unknown type, `gauge.db`). The postmates fork's pid-less
    /// archive names (`counter.db`, `gauge_latest.db`: `<type>.db`, `gauge_<mode>.db`)
    /// parse the fork's way: no pid label, no owner.
    pub fn parse(name: &str) -> Option<DbName> {
        if name.starts_with('.') || !name.ends_with(".db") {
            return None;
        }
        // Iterators, not collected parts: this runs for every name of a cold scan's
        // listing (16,000 at 2,000 writers).
        let stem = &name[..name.len() - 3];
        let mut stem_parts = stem.split('_');
        let pidless = match (stem_parts.next(), stem_parts.next(), stem_parts.next()) {
            (Some(typ), None, _) if typ != "gauge" => Some((typ, None)),
            (Some("gauge"), Some(mode), None) => Some(("gauge", Some(mode.to_string()))),
            _ => None,
        };
        if let Some((typ, mode)) = pidless {
            let typ = if typ == "untyped" { "unknown" } else { typ };
            return known_type(typ).map(|typ| DbName {
                typ,
                mode: mode.map(String::into_boxed_str),
                pid_label: None,
                owner_pid: None,
            });
        }
        let mut parts = name.split('_');
        let (p0, p1, p2) = (parts.next().unwrap_or(""), parts.next(), parts.next());
        let typ = if p0 == "untyped" { "unknown" } else { p0 };
        let typ = known_type(typ)?;
        let (mode, pid_label, rest) = if typ == "gauge" {
            let (Some(p1), Some(p2)) = (p1, p2) else {
                return None;
            };
            // Python slices three characters off parts[2], whatever they are.
            let cut = p2.char_indices().rev().nth(2).map(|(i, _)| i).unwrap_or(0);
            let rest = name
                .splitn(3, '_')
                .nth(2)
                .and_then(|r| r.strip_suffix(".db"))
                .unwrap_or("");
            (Some(p1.into()), Some(p2[..cut].into()), rest)
        } else {
            let rest = name
                .split_once('_')
                .and_then(|(_, r)| r.strip_suffix(".db"))
                .unwrap_or("");
            (None, None, rest)
        };
        let owner_pid = if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            rest.parse::<i32>().ok().filter(|p| *p > 0)
        } else {
            None
        };
        Some(DbName {
            typ,
            mode,
            pid_label,
            owner_pid,
        })
    }
}

/// One entry as found in a buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawEntry<'a> {
    /// The JSON key bytes.
    pub key: &'a [u8],
    /// The stored value.
    pub value: f64,
    /// The stored timestamp (0.0 unless a mostrecent gauge was set).
    pub timestamp: f64,
    /// Offset of the value field (the timestamp follows it).
    pub value_offset: usize,
}

/// Padding after a key of `key_len` bytes: 1..=8 spaces, never 0.
pub fn padding(key_len: usize) -> usize {
    8 - (key_len + 4) % 8
}

/// Total size of an entry with a key of `key_len` bytes.
pub fn entry_len(key_len: usize) -> usize {
    4 + key_len + padding(key_len) + 16
}

fn read_i32(buf: &[u8], pos: usize) -> Option<i32> {
    buf.get(pos..pos + 4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_f64(buf: &[u8], pos: usize) -> Option<f64> {
    let b = buf.get(pos..pos + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(f64::from_le_bytes(a))
}

/// Reads the `used` prefix of an open file into `buf` (cleared first), Python's way: one
/// 4 KiB read, then the rest of `used`. Returns `used`, or 0 for a file shorter than the
/// header (a writer between `open` and `truncate`): that file is simply empty for now.
pub fn read_used(file: &mut File, buf: &mut Vec<u8>) -> Result<usize, FormatError> {
    buf.clear();
    let mut first = [0u8; FIRST_READ];
    let mut n = 0;
    while n < FIRST_READ {
        match file.read(&mut first[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    if n < HEADER_LEN {
        return Ok(0);
    }
    let used = read_i32(&first, 0).unwrap_or(0);
    if used == 0 {
        // Created, not yet initialised by the writer.
        return Ok(0);
    }
    if used < HEADER_LEN as i32 || used % 8 != 0 {
        return Err(FormatError::BadUsed(used.into()));
    }
    let used = used as usize;
    buf.extend_from_slice(&first[..n.min(used)]);
    if used > buf.len() {
        let want = used - buf.len();
        let got = file.take(want as u64).read_to_end(buf)?;
        if got < want {
            return Err(FormatError::Truncated {
                used,
                len: buf.len(),
            });
        }
    } else if used > n {
        return Err(FormatError::Truncated { used, len: n });
    }
    Ok(used)
}

/// Calls `f` for every entry in `buf[start..used]`; `start` must be an entry boundary
/// (8 for a whole file). Fails on the first entry that does not fit, without calling `f`
/// for it.
pub fn for_each_entry<'a>(
    buf: &'a [u8],
    start: usize,
    used: usize,
    mut f: impl FnMut(RawEntry<'a>),
) -> Result<(), FormatError> {
    let used = used.min(buf.len());
    let mut pos = start;
    while pos < used {
        let len = read_i32(buf, pos).ok_or(FormatError::EntryBeyondUsed(pos))?;
        if len < 0 {
            return Err(FormatError::EntryBeyondUsed(pos));
        }
        let len = len as usize;
        let end = pos + entry_len(len);
        if end > used {
            return Err(FormatError::EntryBeyondUsed(pos));
        }
        let key = &buf[pos + 4..pos + 4 + len];
        let voff = end - 16;
        let value = read_f64(buf, voff).ok_or(FormatError::EntryBeyondUsed(pos))?;
        let timestamp = read_f64(buf, voff + 8).ok_or(FormatError::EntryBeyondUsed(pos))?;
        f(RawEntry {
            key,
            value,
            timestamp,
            value_offset: voff,
        });
        pos = end;
    }
    Ok(())
}

/// Reads a whole file and returns its entries as owned `(key, value, timestamp)` triples;
/// convenient for tests and the archiver, not for the hot path.
pub fn read_file(path: &Path) -> Result<Vec<(String, f64, f64)>, FormatError> {
    let mut f = File::open(path)?;
    let mut buf = Vec::new();
    let used = read_used(&mut f, &mut buf)?;
    let mut out = Vec::new();
    let mut bad = None;
    for_each_entry(&buf, HEADER_LEN, used, |e| {
        match std::str::from_utf8(e.key) {
            Ok(k) => out.push((k.to_string(), e.value, e.timestamp)),
            Err(_) => {
                bad.get_or_insert(e.value_offset);
            }
        }
    })?;
    if let Some(off) = bad {
        return Err(FormatError::KeyNotUtf8(off));
    }
    Ok(out)
}

/// Capacity Python would have grown a file to for `used` bytes: 64 KiB doubled until it fits.
pub fn capacity_for(used: usize) -> u64 {
    let mut cap = INITIAL_SIZE;
    while (used as u64) > cap {
        cap *= 2;
    }
    cap
}

/// Encodes entries into the used part of a file, byte-identical to what `MmapedDict`
/// writes when it creates the keys in this order and stores these values.
pub fn encode<'a>(entries: impl IntoIterator<Item = (&'a [u8], f64, f64)>) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN];
    for (key, value, ts) in entries {
        out.extend_from_slice(&(key.len() as i32).to_le_bytes());
        out.extend_from_slice(key);
        out.extend(std::iter::repeat_n(b' ', padding(key.len())));
        out.extend_from_slice(&value.to_le_bytes());
        out.extend_from_slice(&ts.to_le_bytes());
    }
    let used = out.len() as i32;
    out[..4].copy_from_slice(&used.to_le_bytes());
    out
}

/// Writes a complete `.db` file at `path` (which must not be in use): the encoded entries,
/// then sparse zeros up to Python's capacity, then `fsync`.
pub fn write_file<'a>(
    path: &Path,
    entries: impl IntoIterator<Item = (&'a [u8], f64, f64)>,
) -> io::Result<()> {
    let bytes = encode(entries);
    let mut f = File::create(path)?;
    f.write_all(&bytes)?;
    f.set_len(capacity_for(bytes.len()))?;
    f.sync_all()
}

/// Builds a key exactly like `mmap_key`: `json.dumps([metric, sample, labels, help],
/// sort_keys=True)` with Python's default separators and `ensure_ascii`.
pub fn python_key(metric: &str, sample: &str, labels: &[(&str, &str)], help: &str) -> String {
    let mut sorted: Vec<(&str, &str)> = labels.to_vec();
    // Python sorts by code point; UTF-8 byte order is the same order.
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    sorted.dedup_by(|a, b| a.0 == b.0);
    let mut s = String::with_capacity(64);
    s.push('[');
    json_str(&mut s, metric);
    s.push_str(", ");
    json_str(&mut s, sample);
    s.push_str(", {");
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        json_str(&mut s, k);
        s.push_str(": ");
        json_str(&mut s, v);
    }
    s.push_str("}, ");
    json_str(&mut s, help);
    s.push(']');
    s
}

/// Python's `json` string encoder with `ensure_ascii=True`.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{:04x}", u));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_like_python() {
        let n = DbName::parse("gauge_all_worker_1.db").unwrap();
        assert_eq!(n.pid_label.as_deref(), Some("wor"));
        assert_eq!(n.owner_pid, None);
        let n = DbName::parse("gauge_livesum_123.db").unwrap();
        assert_eq!(n.mode.as_deref(), Some("livesum"));
        assert_eq!(n.pid_label.as_deref(), Some("123"));
        assert_eq!(n.owner_pid, Some(123));
        let n = DbName::parse("counter_77.db").unwrap();
        assert_eq!((n.typ, n.owner_pid), ("counter", Some(77)));
        assert_eq!(DbName::parse("counter_archive.db").unwrap().owner_pid, None);
        // The fork's archives: no pid, no owner.
        let n = DbName::parse("gauge_max.db").unwrap();
        assert_eq!(
            (n.mode.as_deref(), n.pid_label, n.owner_pid),
            (Some("max"), None, None)
        );
        let n = DbName::parse("counter.db").unwrap();
        assert_eq!(
            (n.typ, n.mode.as_deref(), n.owner_pid),
            ("counter", None, None)
        );
        assert!(DbName::parse("gauge.db").is_none());
        assert!(DbName::parse("lockfile.db").is_none());
        assert!(DbName::parse(".counter_1.db").is_none());
        assert!(DbName::parse("counter_1.db.tmp").is_none());
        assert!(DbName::parse("weird_1.db").is_none());
        // Edges of the split: `untyped` is `unknown`; a gauge name needs three parts (the
        // third may be empty); a pid-less name has one part, or two for a gauge.
        let n = DbName::parse("untyped_5.db").unwrap();
        assert_eq!((n.typ, n.owner_pid), ("unknown", Some(5)));
        let n = DbName::parse("gauge_all_.db").unwrap();
        assert_eq!((n.pid_label.as_deref(), n.owner_pid), (Some(""), None));
        assert!(DbName::parse("gauge_all.db").unwrap().pid_label.is_none());
        assert!(DbName::parse("counter_a_b.db").unwrap().owner_pid.is_none());
        assert!(DbName::parse("gauge_.db").unwrap().mode.as_deref() == Some(""));
    }

    #[test]
    fn padding_is_never_zero() {
        assert_eq!(padding(4), 8);
        assert_eq!(padding(81), 3);
        assert_eq!(padding(68), 8);
        assert_eq!(entry_len(81), 104);
        assert_eq!(entry_len(89), 112);
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let k1 = python_key(
            "req",
            "req_total",
            &[("path", "/ü\"x")],
            "Requests \"q\"\n \\",
        );
        assert_eq!(
            k1,
            r#"["req", "req_total", {"path": "/\u00fc\"x"}, "Requests \"q\"\n \\"]"#
        );
        let bytes = encode([(k1.as_bytes(), 1.5, 0.0), (b"[]".as_slice(), -0.0, 7.0)]);
        let used = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        assert_eq!(used, bytes.len());
        let mut got = Vec::new();
        for_each_entry(&bytes, HEADER_LEN, used, |e| {
            got.push((e.key.to_vec(), e.value, e.timestamp))
        })
        .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, k1.as_bytes());
        assert!(got[1].1.is_sign_negative());
        assert_eq!(got[1].2, 7.0);
        assert!(for_each_entry(&bytes, HEADER_LEN, used - 1, |_| {}).is_err());
    }

    #[test]
    fn astral_chars_become_surrogate_pairs() {
        assert_eq!(
            python_key("m", "m", &[], "😀\u{7f}"),
            r#"["m", "m", {}, "\ud83d\ude00\u007f"]"#
        );
    }
}
