//! Interning of entry keys: raw JSON key bytes to a small id, and the strings and label
//! tuples inside keys to ids, so that merging works on integers. The same key bytes recur
//! in every process's file (a 2,000-process directory has ~3 M entries but ~40 K keys).

use std::collections::BTreeMap;
use std::sync::Arc;

use rustc_hash::FxHashMap;

/// Id of an interned string.
pub type Sid = u32;
/// Id of an interned label tuple.
pub type LabelsId = u32;
/// Id of an interned key.
pub type KeyId = u32;

/// A parsed key: `[metric_name, sample_name, {labels}, help_text]`.
#[derive(Debug, Clone, Copy)]
pub struct KeyInfo {
    /// Family name.
    pub metric: Sid,
    /// Sample name.
    pub sample: Sid,
    /// Labels sorted by name (`tuple(sorted(labels.items()))`).
    pub labels: LabelsId,
    /// Help text.
    pub help: Sid,
}

/// A key parsed from JSON but not yet interned.
#[derive(Debug)]
pub struct ParsedKey {
    metric: String,
    sample: String,
    labels: BTreeMap<String, String>,
    help: String,
}

/// Parses a key the way `json.loads` + tuple unpacking would accept it.
pub fn parse_key(bytes: &[u8]) -> Result<ParsedKey, String> {
    let (metric, sample, labels, help): (String, String, BTreeMap<String, String>, String) =
        serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if metric.is_empty() {
        return Err("empty metric name".into());
    }
    Ok(ParsedKey {
        metric,
        sample,
        labels,
        help,
    })
}

/// All interned keys, strings and label tuples (grows only).
#[derive(Debug, Default)]
pub struct Interner {
    key_ids: FxHashMap<Box<[u8]>, KeyId>,
    keys: Vec<KeyInfo>,
    str_ids: FxHashMap<Arc<str>, Sid>,
    strs: Vec<Arc<str>>,
    label_ids: FxHashMap<Arc<[(Sid, Sid)]>, LabelsId>,
    labels: Vec<Arc<[(Sid, Sid)]>>,
}

impl Interner {
    /// Looks up already interned key bytes.
    pub fn lookup(&self, key: &[u8]) -> Option<KeyId> {
        self.key_ids.get(key).copied()
    }

    /// Interns key bytes with their parsed form (no-op if already known).
    pub fn insert(&mut self, key: &[u8], parsed: ParsedKey) -> KeyId {
        if let Some(id) = self.key_ids.get(key) {
            return *id;
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
        });
        self.key_ids.insert(key.into(), id);
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
