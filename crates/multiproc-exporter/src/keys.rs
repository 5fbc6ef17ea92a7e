//! Interning of entry keys: raw JSON key bytes to a small id, and the strings and label
//! tuples inside keys to ids, so that merging works on integers. The same key bytes recur
//! in every process's file (a 2,000-process directory has ~3 M entries but ~40 K keys).
//!
//! Two key formats exist: upstream's `[metric_name, sample_name, {labels}, help_text]`
//! (prometheus_client >= 0.16) and the postmates fork's `[metric_name, sample_name,
//! {labels}]` (no help: the fork always serves `Multiprocess metric`). Each key says which
//! one it is, so a file is judged by its keys, never by its name.

use std::collections::BTreeMap;
use std::sync::Arc;

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHashMap};

/// Id of an interned string.
pub type Sid = u32;
/// Id of an interned label tuple.
pub type LabelsId = u32;
/// Id of an interned key.
pub type KeyId = u32;

/// The help text the fork's reader gives every family (its keys carry none).
pub const FORK_HELP: &str = "Multiprocess metric";

/// A parsed key: `[metric_name, sample_name, {labels}, help_text]`, or the fork's
/// 3-element form.
#[derive(Debug, Clone, Copy)]
pub struct KeyInfo {
    /// Family name.
    pub metric: Sid,
    /// Sample name.
    pub sample: Sid,
    /// Labels sorted by name (`tuple(sorted(labels.items()))`).
    pub labels: LabelsId,
    /// Help text ([`FORK_HELP`] for fork keys).
    pub help: Sid,
    /// Whether this is the postmates fork's 3-element key (fork merge semantics apply).
    pub fork: bool,
}

/// A key parsed from JSON but not yet interned.
#[derive(Debug)]
pub struct ParsedKey {
    metric: String,
    sample: String,
    labels: BTreeMap<String, String>,
    help: String,
    fork: bool,
}

impl ParsedKey {
    /// Whether the key is the fork's 3-element form.
    pub fn is_fork(&self) -> bool {
        self.fork
    }
}

type UpstreamKey = (String, String, BTreeMap<String, String>, String);
type ForkKey = (String, String, BTreeMap<String, String>);

/// Parses a key the way `json.loads` + tuple unpacking would accept it: upstream's
/// 4-element key or the fork's 3-element one.
pub fn parse_key(bytes: &[u8]) -> Result<ParsedKey, String> {
    let (metric, sample, labels, help, fork) = match serde_json::from_slice::<UpstreamKey>(bytes) {
        Ok((m, s, l, h)) => (m, s, l, h, false),
        Err(e) => match serde_json::from_slice::<ForkKey>(bytes) {
            Ok((m, s, l)) => (m, s, l, FORK_HELP.to_string(), true),
            // Report the upstream error: it names what a key must look like.
            Err(_) => return Err(format!("{e} (nor the fork's 3-element key)")),
        },
    };
    if metric.is_empty() {
        return Err("empty metric name".into());
    }
    Ok(ParsedKey {
        metric,
        sample,
        labels,
        help,
        fork,
    })
}

/// All interned keys, strings and label tuples (grows only).
#[derive(Debug, Default)]
pub struct Interner {
    /// The bytes of every key, one after the other in id order: a file's next key is
    /// usually the next id (see [`Interner::lookup_after`]), and then its bytes are the
    /// next ones in memory.
    key_bytes: Vec<u8>,
    /// Where each key's bytes are in `key_bytes`: `(start, length)` by id.
    key_spans: Vec<(usize, u32)>,
    /// Key ids by the hash of their bytes (a table of ids into the arena, not a map of
    /// boxed copies: the keys are stored once).
    key_ids: HashTable<KeyId>,
    keys: Vec<KeyInfo>,
    str_ids: FxHashMap<Arc<str>, Sid>,
    strs: Vec<Arc<str>>,
    label_ids: FxHashMap<Arc<[(Sid, Sid)]>, LabelsId>,
    labels: Vec<Arc<[(Sid, Sid)]>>,
}

fn key_hash(key: &[u8]) -> u64 {
    FxBuildHasher.hash_one(key)
}

impl Interner {
    /// The bytes of an interned key.
    pub fn key_bytes(&self, id: KeyId) -> &[u8] {
        let (start, len) = self.key_spans[id as usize];
        &self.key_bytes[start..start + len as usize]
    }

    /// Looks up already interned key bytes.
    pub fn lookup(&self, key: &[u8]) -> Option<KeyId> {
        self.key_ids
            .find(key_hash(key), |&id| self.key_bytes(id) == key)
            .copied()
    }

    /// Looks up key bytes that follow key `prev` in a file. Keys are interned in file
    /// order and a file's keys are written in blocks (a histogram child's buckets, a
    /// labelled child's samples), so the next key is usually `prev + 1`: one comparison
    /// with the bytes next in the arena instead of hashing the key.
    pub fn lookup_after(&self, prev: KeyId, key: &[u8]) -> Option<KeyId> {
        let next = prev.wrapping_add(1);
        if (next as usize) < self.key_spans.len() && self.key_bytes(next) == key {
            return Some(next);
        }
        self.lookup(key)
    }

    /// Interns key bytes with their parsed form (no-op if already known).
    pub fn insert(&mut self, key: &[u8], parsed: ParsedKey) -> KeyId {
        if let Some(id) = self.lookup(key) {
            return id;
        }
        let metric = self.sid(&parsed.metric);
        let sample = self.sid(&parsed.sample);
        let help = self.sid(&parsed.help);
        let pairs: Vec<(Sid, Sid)> = parsed
            .labels
            .iter()
            .map(|(k, v)| (self.sid(k), self.sid(v)))
            .collect();
        let labels = self.labels_id(pairs);
        let id = self.keys.len() as KeyId;
        self.keys.push(KeyInfo {
            metric,
            sample,
            labels,
            help,
            fork: parsed.fork,
        });
        // A file is at most 2^31 bytes (its `used` is an i32), and so is a key.
        self.key_spans
            .push((self.key_bytes.len(), key.len() as u32));
        self.key_bytes.extend_from_slice(key);
        let spans = &self.key_spans;
        let bytes = &self.key_bytes;
        self.key_ids.insert_unique(key_hash(key), id, |&id| {
            let (start, len) = spans[id as usize];
            key_hash(&bytes[start..start + len as usize])
        });
        id
    }

    /// Number of interned keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The parsed form of a key.
    pub fn key(&self, id: KeyId) -> KeyInfo {
        self.keys[id as usize]
    }

    /// Interns a string.
    pub fn sid(&mut self, s: &str) -> Sid {
        if let Some(id) = self.str_ids.get(s) {
            return *id;
        }
        let a: Arc<str> = s.into();
        let id = self.strs.len() as Sid;
        self.strs.push(a.clone());
        self.str_ids.insert(a, id);
        id
    }

    /// The string of an id.
    pub fn str(&self, id: Sid) -> &Arc<str> {
        &self.strs[id as usize]
    }

    /// Interns a label tuple (kept in the given order: the order is part of its identity,
    /// as for a Python tuple).
    pub fn labels_id(&mut self, pairs: Vec<(Sid, Sid)>) -> LabelsId {
        if let Some(id) = self.label_ids.get(pairs.as_slice()) {
            return *id;
        }
        let a: Arc<[(Sid, Sid)]> = pairs.into();
        let id = self.labels.len() as LabelsId;
        self.labels.push(a.clone());
        self.label_ids.insert(a, id);
        id
    }

    /// The pairs of a label tuple.
    pub fn labels(&self, id: LabelsId) -> &Arc<[(Sid, Sid)]> {
        &self.labels[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_key_formats_parse_and_others_fail() {
        let up = parse_key(br#"["m", "m_total", {"a": "1"}, "help"]"#).unwrap();
        assert!(!up.is_fork());
        let fork = parse_key(br#"["m", "m_total", {"a": "1"}]"#).unwrap();
        assert!(fork.is_fork());
        assert_eq!(fork.help, FORK_HELP);
        let e = parse_key(br#"["m", "m_total"]"#).unwrap_err();
        assert!(e.contains("3-element"), "{e}");
        assert!(parse_key(br#"["m", "m", {}, "h", 5]"#).is_err());
        assert!(parse_key(br#"["", "m", {}]"#).is_err());
    }
}
