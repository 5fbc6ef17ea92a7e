//! One-pass validation and encoding of target groups (issue 19).
//!
//! A serde visitor checks a document against the serve profile while it is being
//! deserialised and writes the original's bytes (see `pyjson`) as it goes, so no tree
//! of the document is ever built: memory grows with the bytes served, not with the
//! parsed form. The visitor only ever says yes: anything it does not accept with
//! certainty (an invalid group, a duplicate key, a syntax error) makes it decline, and
//! the caller then takes the tree path (`validate::into_output`), which finds the exact
//! problems and messages users see. Invalid documents are rare, so only they pay for
//! the tree.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::pyjson;
use crate::validate::{self, GeneratorOutput};

/// Validates and encodes a JSON document (a static file, a program's stdout).
///
/// `None` when the document is not a valid list of target groups as written (or has a
/// duplicate key): the caller must then parse it into a tree for the exact error.
pub fn encode_json(bytes: &[u8]) -> Option<GeneratorOutput> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    // The output is about as long as a compact input: reserving it up front spares the
    // copies of a doubling buffer (pages never written are never resident).
    let mut state = State::with_capacity(bytes.len());
    Document(&mut state).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(state.finish())
}

/// Validates and encodes an already parsed document (a Python generator's result).
///
/// `None` when `value` is not a valid list of target groups.
pub fn encode_value(value: &Value) -> Option<GeneratorOutput> {
    let groups = value.as_array()?;
    let mut state = State::with_capacity(64 * groups.len());
    Document(&mut state).deserialize(value).ok()?;
    Some(state.finish())
}

/// Deserialises a list of groups straight into its encoded form (for
/// `#[serde(deserialize_with)]` on a field of a bigger document); an error when the
/// list is not accepted as written, so the caller can take the tree path.
pub fn deserialize_output<'de, D: Deserializer<'de>>(d: D) -> Result<GeneratorOutput, D::Error> {
    let mut state = State::with_capacity(0);
    Document(&mut state).deserialize(d)?;
    Ok(state.finish())
}

/// The encoder's working state: the output, and scratch space reused for every group
/// so that a document of any size costs no allocation per group.
struct State {
    out: Vec<u8>,
    group_count: usize,
    target_count: usize,
    /// The current group's `targets` list, encoded.
    targets: Vec<u8>,
    /// The current group's label names (raw: valid names are plain ASCII) and values
    /// (encoded), back to back.
    labels: Vec<u8>,
    /// (name, value) ranges into `labels`, one per label of the current group.
    entries: Vec<(Range<usize>, Range<usize>)>,
}

impl State {
    fn with_capacity(capacity: usize) -> State {
        State {
            out: Vec::with_capacity(capacity),
            group_count: 0,
            target_count: 0,
            targets: Vec::new(),
            labels: Vec::new(),
            entries: Vec::new(),
        }
    }

    fn finish(mut self) -> GeneratorOutput {
        self.out.shrink_to_fit();
        GeneratorOutput {
            groups_json: self.out,
            group_count: self.group_count,
            target_count: self.target_count,
        }
    }

    /// Appends the current group as `{"labels":{...},"targets":[...]}` (keys sorted
    /// as Python sorts them); `labels` is `None` when the group has none.
    fn write_group(&mut self, labels: Option<LabelsKind>) -> Result<(), Declined> {
        if self.group_count > 0 {
            self.out.push(b',');
        }
        self.out.push(b'{');
        match labels {
            None => {}
            Some(LabelsKind::Null) => self.out.extend_from_slice(b"\"labels\":null,"),
            Some(LabelsKind::Map) => {
                let labels = &self.labels;
                self.entries
                    .sort_unstable_by(|a, b| labels[a.0.clone()].cmp(&labels[b.0.clone()]));
                // A repeated name keeps its last value in the tree path: decline and let it.
                if self
                    .entries
                    .windows(2)
                    .any(|w| labels[w[0].0.clone()] == labels[w[1].0.clone()])
                {
                    return Err(Declined);
                }
                self.out.extend_from_slice(b"\"labels\":{");
                for (i, (name, value)) in self.entries.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.out.push(b'"');
                    self.out.extend_from_slice(&labels[name.clone()]);
                    self.out.extend_from_slice(b"\":");
                    self.out.extend_from_slice(&labels[value.clone()]);
                }
                self.out.extend_from_slice(b"},");
            }
        }
        self.out.extend_from_slice(b"\"targets\":");
        self.out.extend_from_slice(&self.targets);
        self.out.push(b'}');
        self.group_count += 1;
        Ok(())
    }
}

/// Each seed below is its own visitor; `seed!(Seed, Value, how)` lets the deserializer
/// drive it (`how`: `deserialize_any`, or `deserialize_str` for keys). Written by hand
/// because serde derives nothing for stateful seeds.
macro_rules! seed {
    ($seed:ty, $value:ty, $how:ident) => {
        impl<'de> DeserializeSeed<'de> for $seed {
            type Value = $value;

            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<$value, D::Error> {
                d.$how(self)
            }
        }
    };
}

/// The encoder gives up; the tree path decides.
#[derive(Debug)]
struct Declined;

fn decline<E: de::Error>() -> E {
    E::custom("declined by the one-pass encoder")
}

/// Which `labels` a group has.
enum LabelsKind {
    Null,
    Map,
}

/// The whole document: a list of groups.
struct Document<'a>(&'a mut State);

seed!(Document<'_>, (), deserialize_any);

impl<'de> Visitor<'de> for Document<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of target groups")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Group(&mut *self.0))?.is_some() {}
        Ok(())
    }
}

/// One target group: an object with `targets` and optionally `labels`.
struct Group<'a>(&'a mut State);

seed!(Group<'_>, (), deserialize_any);

impl<'de> Visitor<'de> for Group<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a target group")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let st = self.0;
        st.targets.clear();
        st.labels.clear();
        st.entries.clear();
        let mut has_targets = false;
        let mut labels = None;
        while let Some(key) = map.next_key_seed(GroupKey)? {
            match key {
                // A repeated key: the tree path keeps the last one, let it.
                GroupKeyKind::Targets if has_targets => return Err(decline()),
                GroupKeyKind::Labels if labels.is_some() => return Err(decline()),
                GroupKeyKind::Targets => {
                    has_targets = true;
                    map.next_value_seed(Targets(&mut *st))?;
                }
                GroupKeyKind::Labels => labels = Some(map.next_value_seed(Labels(&mut *st))?),
            }
        }
        if !has_targets {
            return Err(decline());
        }
        st.write_group(labels).map_err(|Declined| decline())
    }
}

enum GroupKeyKind {
    Targets,
    Labels,
}

/// A key of a group: only `targets` and `labels` are allowed.
struct GroupKey;

seed!(GroupKey, GroupKeyKind, deserialize_str);

impl<'de> Visitor<'de> for GroupKey {
    type Value = GroupKeyKind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"targets\" or \"labels\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<GroupKeyKind, E> {
        match v {
            "targets" => Ok(GroupKeyKind::Targets),
            "labels" => Ok(GroupKeyKind::Labels),
            _ => Err(decline()),
        }
    }
}

/// A group's `targets`: a list of strings, encoded into `State::targets`.
struct Targets<'a>(&'a mut State);

seed!(Targets<'_>, (), deserialize_any);

impl<'de> Visitor<'de> for Targets<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of targets")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.targets.clear();
        self.0.targets.push(b'[');
        while seq.next_element_seed(Target(&mut *self.0))?.is_some() {}
        self.0.targets.push(b']');
        Ok(())
    }
}

/// One target: a string.
struct Target<'a>(&'a mut State);

seed!(Target<'_>, (), deserialize_any);

impl<'de> Visitor<'de> for Target<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a target string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if self.0.targets.len() > 1 {
            self.0.targets.push(b',');
        }
        pyjson::write_str(&mut self.0.targets, v);
        self.0.target_count += 1;
        Ok(())
    }
}

/// A group's `labels`: null or a map of valid names to strings.
struct Labels<'a>(&'a mut State);

seed!(Labels<'_>, LabelsKind, deserialize_any);

impl<'de> Visitor<'de> for Labels<'_> {
    type Value = LabelsKind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of labels or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<LabelsKind, E> {
        Ok(LabelsKind::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LabelsKind, A::Error> {
        let st = self.0;
        st.labels.clear();
        st.entries.clear();
        while let Some(name) = map.next_key_seed(LabelName(&mut st.labels))? {
            let value = map.next_value_seed(LabelValue(&mut st.labels))?;
            st.entries.push((name, value));
        }
        Ok(LabelsKind::Map)
    }
}

/// A label name, kept raw: a valid name is ASCII and needs no escaping.
struct LabelName<'a>(&'a mut Vec<u8>);

seed!(LabelName<'_>, Range<usize>, deserialize_str);

impl<'de> Visitor<'de> for LabelName<'_> {
    type Value = Range<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a label name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Range<usize>, E> {
        if !validate::is_valid_label_name(v) {
            return Err(decline());
        }
        let start = self.0.len();
        self.0.extend_from_slice(v.as_bytes());
        Ok(start..self.0.len())
    }
}

/// A label value: a string, kept encoded.
struct LabelValue<'a>(&'a mut Vec<u8>);

seed!(LabelValue<'_>, Range<usize>, deserialize_any);

impl<'de> Visitor<'de> for LabelValue<'_> {
    type Value = Range<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a label value string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Range<usize>, E> {
        let start = self.0.len();
        pyjson::write_str(self.0, v);
        Ok(start..self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::static_files::parse_static;
    use crate::tree::GeneratorKind;

    /// The tree path's answer for a JSON document (what `serve` answered before).
    fn tree(doc: &str) -> Result<GeneratorOutput, validate::InvalidOutput> {
        let value: Value = serde_json::from_str(doc).expect("test documents parse");
        validate::into_output(&value, &validate::Profile::SERVE).map(|o| (*o).clone())
    }

    fn text(out: &GeneratorOutput) -> &str {
        std::str::from_utf8(&out.groups_json).unwrap()
    }

    const ACCEPTED: &[&str] = &[
        "[]",
        " \n[ ]\n ",
        r#"[{"targets":[]}]"#,
        r#"[{"targets":["a:1","b"],"labels":{"job":"x"}},{"targets":[]},{"targets":["c:2"],"labels":null}]"#,
        r#"[{"labels":{"z":"1","a":"2","_":"3","A":"4","a_b":"5","ab":"6"},"targets":["x:1"]}]"#,
        r#"[{"targets":["x:1"],"labels":{}}]"#,
        r#"[{"targets":["\u00e9:1","😀","é"],"labels":{"a":"\ud83d\ude00","b":"\u007f\"\\\n\t\b\f\r\u0001\/","c":"日本"}}]"#,
        r#"[{"targets":["\u0000", "", " ~"], "labels": {"__meta_x": "\u2028"}}]"#,
        "[\n  {\n    \"targets\": [\n      \"10.0.0.1:9100\"\n    ],\n    \"labels\": {\n      \"job\": \"node\"\n    }\n  }\n]\n",
    ];

    #[test]
    fn accepted_documents_encode_as_the_tree_path_does() {
        for doc in ACCEPTED {
            let fast = encode_json(doc.as_bytes()).unwrap_or_else(|| panic!("declined {doc}"));
            let slow = tree(doc).unwrap();
            assert_eq!(fast, slow, "{doc}");
            let value: Value = serde_json::from_str(doc).unwrap();
            assert_eq!(encode_value(&value).as_ref(), Some(&slow), "{doc}");
        }
        let out = encode_json(ACCEPTED[4].as_bytes()).unwrap();
        assert_eq!(
            text(&out),
            r#"{"labels":{"A":"4","_":"3","a":"2","a_b":"5","ab":"6","z":"1"},"targets":["x:1"]}"#
        );
        let out = encode_json(ACCEPTED[6].as_bytes()).unwrap();
        assert_eq!(
            text(&out),
            r#"{"labels":{"a":"\ud83d\ude00","b":"\u007f\"\\\n\t\b\f\r\u0001/","c":"\u65e5\u672c"},"targets":["\u00e9:1","\ud83d\ude00","\u00e9"]}"#
        );
        assert_eq!((out.group_count, out.target_count), (1, 3));
    }

    /// Documents the tree path refuses: the encoder must decline every one of them,
    /// and `parse_static` must give the same error as before.
    const REFUSED: &[&str] = &[
        "null",
        "{}",
        r#"{"targets":[]}"#,
        r#"["a:1"]"#,
        r#"[{"targets":[1]}]"#,
        r#"[{"targets":["a:1", null]}]"#,
        r#"[{"targets":"a:1"}]"#,
        r#"[{"labels":{}}]"#,
        r#"[{"targets":[],"x":1}]"#,
        r#"[{"targets":[],"labels":{"bad-name":"v"}}]"#,
        r#"[{"targets":[],"labels":{"é":"v"}}]"#,
        r#"[{"targets":[],"labels":{"a":1.5}}]"#,
        r#"[{"targets":[],"labels":{"a":1}}]"#,
        r#"[{"targets":[],"labels":{"a":false}}]"#,
        r#"[{"targets":[],"labels":{"a":{"b":"c"}}}]"#,
        r#"[{"targets":[],"labels":["a"]}]"#,
        r#"[{"targets":[],"labels":"a"}]"#,
        r#"[{"targets":["a:1"]}, 3]"#,
    ];

    #[test]
    fn refused_documents_are_declined_with_the_same_error() {
        for doc in REFUSED {
            assert!(tree(doc).is_err(), "{doc}");
            assert_eq!(encode_json(doc.as_bytes()), None, "{doc}");
            let value: Value = serde_json::from_str(doc).unwrap();
            assert_eq!(encode_value(&value), None, "{doc}");
            let err = parse_static("f.json", GeneratorKind::Json, doc.as_bytes()).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Invalid, "{doc}");
            assert_eq!(
                err.message,
                format!("f.json: {}", tree(doc).unwrap_err().summary)
            );
        }
        // Not JSON at all: declined, and the parser's error is the tree path's.
        for doc in [
            "[",
            "[] x",
            "[{\"targets\":[\"a\",]}]",
            "[1e400]",
            "\u{feff}[]",
        ] {
            assert_eq!(encode_json(doc.as_bytes()), None, "{doc}");
            let err = parse_static("f.json", GeneratorKind::Json, doc.as_bytes()).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Parse, "{doc}");
        }
        assert_eq!(encode_json(b"[\"\xff\"]"), None);
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_as_before() {
        for (doc, want) in [
            (
                r#"[{"targets":["a:1"],"targets":["b:1"]}]"#,
                r#"{"targets":["b:1"]}"#,
            ),
            // The first, invalid `targets` is overwritten: accepted, as before.
            (
                r#"[{"targets":[1],"targets":["b:1"]}]"#,
                r#"{"targets":["b:1"]}"#,
            ),
            (
                r#"[{"targets":[],"labels":{"a":"1","b":"x","a":"2"}}]"#,
                r#"{"labels":{"a":"2","b":"x"},"targets":[]}"#,
            ),
            (
                r#"[{"labels":null,"targets":[],"labels":{"a":"1"}}]"#,
                r#"{"labels":{"a":"1"},"targets":[]}"#,
            ),
        ] {
            assert_eq!(encode_json(doc.as_bytes()), None, "{doc}");
            let out = parse_static("f.json", GeneratorKind::Json, doc.as_bytes()).unwrap();
            assert_eq!(text(&out), want);
            assert_eq!(*out, tree(doc).unwrap());
        }
    }

    /// A deterministic mix of strings over every escaping class, many groups.
    #[test]
    fn many_generated_groups_match_the_tree_path() {
        let pieces = [
            "a", "Z", "0", ":", "9100", ".", "-", "\"", "\\", "/", "\n", "\t", "\u{1}", "\u{7f}",
            "é", "ß", "日", "😀", "\u{2028}", " ", "~",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % n as u64).unwrap()
        };
        let mut groups = Vec::new();
        for g in 0..2000 {
            let string = |next: &mut dyn FnMut(usize) -> usize| {
                (0..next(12))
                    .map(|_| pieces[next(pieces.len())])
                    .collect::<String>()
            };
            let targets: Vec<String> = (0..next(5)).map(|_| string(&mut next)).collect();
            let mut group = serde_json::json!({ "targets": targets });
            match g % 3 {
                0 => {}
                1 => group["labels"] = Value::Null,
                _ => {
                    let mut labels = serde_json::Map::new();
                    for i in 0..next(6) {
                        labels.insert(format!("l{}_{i}", next(100)), string(&mut next).into());
                    }
                    group["labels"] = labels.into();
                }
            }
            groups.push(group);
        }
        // Written as serde_json writes it (raw UTF-8) and as Python writes it (escaped).
        let doc = Value::Array(groups);
        for text in [
            doc.to_string(),
            String::from_utf8(pyjson::to_body(&doc)).unwrap(),
        ] {
            let fast = encode_json(text.as_bytes()).unwrap();
            assert_eq!(fast, tree(&text).unwrap());
            assert_eq!(fast.group_count, 2000);
        }
    }
}
