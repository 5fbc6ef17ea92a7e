//! Metric and label names: the legacy character set, the `escaping=` schemes of the
//! Accept header (`underscores`, `allow-utf-8`, `dots`, `values`) as prometheus_client
//! 0.26.0 applies them, and the escaping of help texts and label values.

use std::fmt::Write as _;

/// Name escaping scheme (`escaping=` parameter of the Accept header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Escaping {
    /// `underscores` (the default): invalid characters become `_`.
    Underscores,
    /// `allow-utf-8`: names are quoted when not legacy-valid.
    AllowUtf8,
    /// `dots`.
    Dots,
    /// `values`.
    Values,
}

impl Escaping {
    /// The name used in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Escaping::Underscores => "underscores",
            Escaping::AllowUtf8 => "allow-utf-8",
            Escaping::Dots => "dots",
            Escaping::Values => "values",
        }
    }
}

fn legacy_body(s: &str) -> &str {
    // Python's `$` also matches before one trailing newline.
    s.strip_suffix('\n').unwrap_or(s)
}

/// `^[a-zA-Z_:][a-zA-Z0-9_:]*$` as Python's `re` applies it.
pub fn is_valid_legacy_metric_name(s: &str) -> bool {
    let b = legacy_body(s).as_bytes();
    !s.is_empty()
        && !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// Legacy label name check (also refuses the reserved `__` prefix).
pub fn is_valid_legacy_label_name(s: &str) -> bool {
    let b = legacy_body(s).as_bytes();
    !s.is_empty()
        && !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && !s.starts_with("__")
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`: a label name the parsers accept unquoted (Prometheus's
/// lexer; unlike [`is_valid_legacy_label_name`] it allows `__` and no trailing newline).
pub fn is_plain_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*` exactly: a metric name the parsers accept unquoted.
pub fn is_plain_metric_name(s: &str) -> bool {
    !s.ends_with('\n') && is_valid_legacy_metric_name(s)
}

pub(crate) fn label_rune(c: char, i: usize) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (c.is_ascii_digit() && i > 0)
}

fn metric_rune(c: char, i: usize) -> bool {
    label_rune(c, i) || c == ':'
}

/// Backslash, newline and double quote escaped (label values, OpenMetrics help).
pub fn escape_value(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    push_escaped_value(&mut o, s);
    o
}

/// Backslash and newline escaped (help in the text format: quotes stay as they are).
pub fn escape_help_text(s: &str) -> String {
    s.replace('\\', r"\\").replace('\n', r"\n")
}

/// Writes `s` with backslash, newline and double quote escaped, without allocating when
/// there is nothing to escape (the common case).
pub(crate) fn push_escaped_value(out: &mut String, s: &str) {
    // A byte scan: these three are ASCII, so no UTF-8 decoding is needed to find them.
    if !s.bytes().any(|b| matches!(b, b'\\' | b'\n' | b'"')) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '\n' => out.push_str(r"\n"),
            '"' => out.push_str(r#"\""#),
            c => out.push(c),
        }
    }
}

/// Python's `openmetrics._escape(s, escaping, valid)`.
pub(crate) fn escape(s: &str, esc: Escaping, valid: fn(char, usize) -> bool) -> String {
    match esc {
        Escaping::AllowUtf8 => escape_value(s),
        Escaping::Underscores => s
            .chars()
            .enumerate()
            .map(|(i, c)| if valid(c, i) { c } else { '_' })
            .collect(),
        Escaping::Dots => {
            let mut o = String::with_capacity(s.len());
            for (i, c) in s.chars().enumerate() {
                match c {
                    '_' => o.push_str("__"),
                    '.' => o.push_str("_dot_"),
                    c if valid(c, i) => o.push(c),
                    _ => o.push_str("__"),
                }
            }
            o
        }
        Escaping::Values => {
            let mut o = String::from("U__");
            for (i, c) in s.chars().enumerate() {
                match c {
                    '_' => o.push_str("__"),
                    c if valid(c, i) => o.push(c),
                    c => {
                        let _ = write!(o, "_{:x}_", c as u32);
                    }
                }
            }
            o
        }
    }
}

/// Python's `escape_metric_name` and `escape_label_name`, which differ only in the
/// character set: quoted under `allow-utf-8` when not legacy-valid.
fn escape_name(s: &str, esc: Escaping, legacy: bool, rune: fn(char, usize) -> bool) -> String {
    match esc {
        _ if s.is_empty() => String::new(),
        Escaping::AllowUtf8 if !legacy => format!("\"{}\"", escape(s, esc, rune)),
        Escaping::Underscores | Escaping::Values if legacy => s.to_string(),
        _ => escape(s, esc, rune),
    }
}

/// Python's `escape_metric_name`: quoted under `allow-utf-8` when not legacy-valid.
pub fn escape_metric_name(s: &str, esc: Escaping) -> String {
    escape_name(s, esc, is_valid_legacy_metric_name(s), metric_rune)
}

/// Python's `escape_label_name`.
pub fn escape_label_name(s: &str, esc: Escaping) -> String {
    escape_name(s, esc, is_valid_legacy_label_name(s), label_rune)
}

/// [`escape_metric_name`] written into `out`, without allocating for legacy names;
/// `legacy` is [`is_valid_legacy_metric_name`]`(s)`, which the caller may know already.
pub(crate) fn push_metric_name(out: &mut String, s: &str, esc: Escaping, legacy: bool) {
    if matches!(esc, Escaping::Underscores | Escaping::Values) && legacy {
        out.push_str(s);
    } else {
        out.push_str(&escape_name(s, esc, legacy, metric_rune));
    }
}

/// [`escape_label_name`] written into `out`, without allocating for legacy names;
/// `legacy` is [`is_valid_legacy_label_name`]`(s)`, which the caller may know already.
pub(crate) fn push_label_name(out: &mut String, s: &str, esc: Escaping, legacy: bool) {
    if matches!(esc, Escaping::Underscores | Escaping::Values) && legacy {
        out.push_str(s);
    } else {
        out.push_str(&escape_name(s, esc, legacy, label_rune));
    }
}

/// The checks of the last `N` distinct strings, remembered by address and length.
///
/// Within one encode the families are borrowed, so an address cannot come to hold other
/// bytes; and a family's samples usually share their name and label-name strings (one
/// `Arc<str>` each in multiproc-exporter's merged families), so one comparison replaces
/// a byte-wise check per sample and label: that check was about a sixth of encoding a
/// large merged output (perf, docs/benchmarks-multiproc.md). Strings owned per sample
/// (a parsed family) simply miss.
#[derive(Debug)]
pub(crate) struct CheckMemo<const N: usize> {
    keys: [(usize, usize); N],
    values: [u8; N],
    next: usize,
}

impl<const N: usize> Default for CheckMemo<N> {
    fn default() -> Self {
        // A `&str`'s address is never 0, so the empty keys match nothing.
        CheckMemo {
            keys: [(0, 0); N],
            values: [0; N],
            next: 0,
        }
    }
}

impl<const N: usize> CheckMemo<N> {
    /// `check(s)`, from memory when `s` is a string seen lately.
    pub(crate) fn get(&mut self, s: &str, check: impl FnOnce(&str) -> u8) -> u8 {
        let key = (s.as_ptr() as usize, s.len());
        if let Some(i) = self.keys.iter().position(|k| *k == key) {
            return self.values[i];
        }
        let value = check(s);
        self.keys[self.next] = key;
        self.values[self.next] = value;
        self.next = (self.next + 1) % N;
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_like_python() {
        assert!(is_valid_legacy_metric_name("a:b_c1"));
        assert!(!is_valid_legacy_metric_name("1a"));
        assert_eq!(escape_metric_name("a.b-c", Escaping::Underscores), "a_b_c");
        assert_eq!(escape_metric_name("a.b", Escaping::AllowUtf8), "\"a.b\"");
        assert_eq!(escape_metric_name("a_b.c", Escaping::Dots), "a__b_dot_c");
        assert_eq!(escape_metric_name("a.b", Escaping::Values), "U__a_2e_b");
        assert_eq!(escape_label_name("__x", Escaping::Underscores), "__x");
    }

    #[test]
    fn check_memo_tells_strings_apart_by_address_and_length() {
        let len = |s: &str| s.len() as u8;
        let mut memo = CheckMemo::<2>::default();
        let text = String::from("abc");
        let copy = text.clone();
        let mut calls = 0;
        let mut get = |memo: &mut CheckMemo<2>, s: &str| {
            memo.get(s, |s| {
                calls += 1;
                len(s)
            })
        };
        assert_eq!(get(&mut memo, &text), 3);
        assert_eq!(get(&mut memo, &text), 3);
        // Equal bytes elsewhere, and a prefix at the same address, are other strings.
        assert_eq!(get(&mut memo, &copy), 3);
        assert_eq!(get(&mut memo, &text[..2]), 2);
        // Two entries: `text` was the oldest and is checked again.
        assert_eq!(get(&mut memo, &text), 3);
        assert_eq!(calls, 4);
    }
}
