//! The encoders: text 0.0.4 exactly as `prometheus_client.exposition.generate_latest`
//! writes it, OpenMetrics 1.0 as `openmetrics.exposition.generate_latest` writes it.
//! Both read families through [`FamilyView`] and write into one `String`.

use std::fmt::Write as _;

use crate::float::{push_float_go, python_repr};
use crate::model::{Exemplar, FamilyView, LabelPair, SampleRef, Timestamp};
use crate::names::{
    CheckMemo, Escaping, escape, escape_help_text, escape_metric_name, escape_value,
    is_plain_label_name, is_valid_legacy_label_name, is_valid_legacy_metric_name, label_rune,
    push_escaped_value, push_label_name, push_metric_name,
};
use crate::negotiate::Format;

/// The first buffer size when the caller gives none.
const DEFAULT_CAPACITY: usize = 1 << 16;

/// What one encode has found out about the names it writes (see [`CheckMemo`]), for
/// families whose samples share their names ([`FamilyView::shares_names`]).
#[derive(Debug, Default)]
struct NameChecks {
    /// Whether the current family shares its names: otherwise every check is made.
    shared: bool,
    /// Sample names: [`LEGACY`] and [`PLAIN`] bits. A histogram's label sets alternate
    /// between a few names (`_bucket`, `_count`, `_sum`, `_created`).
    samples: CheckMemo<4>,
    /// Label names: 1 when legacy-valid.
    labels: CheckMemo<8>,
}

/// [`is_valid_legacy_metric_name`].
const LEGACY: u8 = 1;
/// [`is_plain_label_name`] (how OpenMetrics writes a sample name without escaping it).
const PLAIN: u8 = 2;

impl NameChecks {
    /// The [`LEGACY`] bit of a sample name, and its [`PLAIN`] bit when `plain` (only
    /// OpenMetrics needs it; one encode asks for it always or never).
    fn sample(&mut self, name: &str, plain: bool) -> u8 {
        let check = |s: &str| {
            let legacy = is_valid_legacy_metric_name(s);
            let plain = plain && is_plain_label_name(s);
            (if legacy { LEGACY } else { 0 }) | (if plain { PLAIN } else { 0 })
        };
        match self.shared {
            true => self.samples.get(name, check),
            false => check(name),
        }
    }

    /// Whether a label name is legacy-valid.
    fn legacy_label(&mut self, name: &str) -> bool {
        let check = |s: &str| u8::from(is_valid_legacy_label_name(s));
        match self.shared {
            true => self.labels.get(name, check) == 1,
            false => check(name) == 1,
        }
    }
}

/// Writes `k="v",...` sorted by name (then value, as Python sorts the items).
fn push_labels<L: LabelPair>(
    out: &mut String,
    labels: &[L],
    esc: Escaping,
    checks: &mut NameChecks,
) {
    // Sorting indices in a stack array: no allocation for the usual handful of labels.
    let mut small: [usize; 16] = [0; 16];
    let mut big: Vec<usize> = Vec::new();
    let idx: &mut [usize] = if labels.len() <= small.len() {
        &mut small[..labels.len()]
    } else {
        big.resize(labels.len(), 0);
        &mut big
    };
    for (i, o) in idx.iter_mut().enumerate() {
        *o = i;
    }
    idx.sort_by(|&a, &b| {
        let (a, b) = (&labels[a], &labels[b]);
        a.label_name()
            .cmp(b.label_name())
            .then_with(|| a.label_value().cmp(b.label_value()))
    });
    for (n, &i) in idx.iter().enumerate() {
        let l = &labels[i];
        if n > 0 {
            out.push(',');
        }
        let name = l.label_name();
        push_label_name(out, name, esc, checks.legacy_label(name));
        out.push_str("=\"");
        push_escaped_value(out, l.label_value());
        out.push('"');
    }
}

/// Python's `int(float(ts) * 1000)`; nothing for a non-finite timestamp (Python raises).
fn push_text_timestamp(out: &mut String, ts: Timestamp) {
    match ts {
        Timestamp::Millis(ms) => {
            let _ = write!(out, " {ms}");
        }
        Timestamp::Seconds(s) => {
            let ms = (s * 1000.0).trunc();
            if ms.is_finite() {
                // `{:.0}` writes the exact integer, as Python's unbounded int() does; the
                // `+ 0.0` turns -0.0 into 0 as int() does.
                let _ = write!(out, " {:.0}", ms + 0.0);
            }
        }
    }
}

/// Python's `str(ts)`: `repr` of the float seconds.
fn push_openmetrics_timestamp(out: &mut String, ts: Timestamp) {
    out.push(' ');
    match ts {
        Timestamp::Seconds(s) => out.push_str(&python_repr(s)),
        Timestamp::Millis(ms) => {
            let sign = if ms < 0 { "-" } else { "" };
            let abs = ms.unsigned_abs();
            let _ = write!(out, "{sign}{}.{:03}", abs / 1000, abs % 1000);
        }
    }
}

fn text_sample<L: LabelPair>(
    out: &mut String,
    s: &SampleRef<'_, L>,
    esc: Escaping,
    checks: &mut NameChecks,
) {
    let legacy = checks.sample(s.name, false) & LEGACY != 0;
    if esc != Escaping::AllowUtf8 || legacy {
        push_metric_name(out, s.name, esc, legacy);
        if !s.labels.is_empty() {
            out.push('{');
            push_labels(out, s.labels, esc, checks);
            out.push('}');
        }
    } else {
        out.push('{');
        out.push_str(&escape_metric_name(s.name, esc));
        if !s.labels.is_empty() {
            out.push(',');
            push_labels(out, s.labels, esc, checks);
        }
        out.push('}');
    }
    out.push(' ');
    push_float_go(out, s.value);
    if let Some(ts) = s.timestamp {
        push_text_timestamp(out, ts);
    }
    out.push('\n');
}

/// The text format (`generate_latest`), with the given name escaping.
pub fn encode_text<'a, F: FamilyView + 'a>(
    fams: impl IntoIterator<Item = &'a F>,
    esc: Escaping,
) -> String {
    encode(fams, &Format::Text(esc))
}

fn write_text<'a, F: FamilyView + 'a>(
    out: &mut String,
    fams: impl IntoIterator<Item = &'a F>,
    esc: Escaping,
) {
    let mut checks = NameChecks::default();
    for f in fams {
        checks.shared = f.shares_names();
        let name = f.name();
        let (mname, mtype) = match f.type_name() {
            "counter" => (format!("{name}_total"), "counter"),
            "info" => (format!("{name}_info"), "gauge"),
            "stateset" => (name.to_string(), "gauge"),
            "gaugehistogram" => (name.to_string(), "histogram"),
            "unknown" => (name.to_string(), "untyped"),
            t => (name.to_string(), t),
        };
        let ename = escape_metric_name(&mname, esc);
        let help = escape_help_text(f.help());
        let _ = writeln!(out, "# HELP {ename} {help}");
        let _ = writeln!(out, "# TYPE {ename} {mtype}");
        // OpenMetrics-only samples go into trailing gauge families, as Python does.
        let mut om: Vec<(&str, String)> = Vec::new();
        for s in f.samples() {
            let suffix = ["_created", "_gsum", "_gcount"].into_iter().find(|suf| {
                s.name.len() == name.len() + suf.len()
                    && s.name.starts_with(name)
                    && s.name.ends_with(suf)
            });
            match suffix {
                Some(suf) => {
                    let mut line = String::new();
                    text_sample(&mut line, &s, esc, &mut checks);
                    match om.iter_mut().find(|o| o.0 == suf) {
                        Some(o) => o.1.push_str(&line),
                        None => om.push((suf, line)),
                    }
                }
                None => text_sample(out, &s, esc, &mut checks),
            }
        }
        om.sort_by(|a, b| a.0.cmp(b.0));
        for (suf, lines) in om {
            let n = escape_metric_name(&format!("{name}{suf}"), esc);
            let _ = writeln!(out, "# HELP {n} {help}");
            let _ = writeln!(out, "# TYPE {n} gauge");
            out.push_str(&lines);
        }
    }
}

/// Python's `_compose_exemplar_string`: exemplar label names are written as they are.
fn push_exemplar(out: &mut String, e: &Exemplar) {
    let mut labels: Vec<&(String, String)> = e.labels.iter().collect();
    labels.sort();
    out.push_str(" # {");
    for (n, (k, v)) in labels.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape_value(v));
    }
    out.push_str("} ");
    push_float_go(out, e.value);
    if let Some(ts) = e.timestamp {
        push_openmetrics_timestamp(out, ts);
    }
}

/// OpenMetrics 1.0 text (`openmetrics.exposition.generate_latest`), ending in `# EOF`.
pub fn encode_openmetrics<'a, F: FamilyView + 'a>(
    fams: impl IntoIterator<Item = &'a F>,
    esc: Escaping,
) -> String {
    encode(fams, &Format::OpenMetrics(esc))
}

fn write_openmetrics<'a, F: FamilyView + 'a>(
    out: &mut String,
    fams: impl IntoIterator<Item = &'a F>,
    esc: Escaping,
) {
    let mut labelstr = String::new();
    let mut checks = NameChecks::default();
    for f in fams {
        checks.shared = f.shares_names();
        let ename = escape_metric_name(f.name(), esc);
        let _ = writeln!(out, "# HELP {ename} {}", escape_value(f.help()));
        let _ = writeln!(out, "# TYPE {ename} {}", f.type_name());
        if !f.unit().is_empty() {
            let _ = writeln!(out, "# UNIT {ename} {}", f.unit());
        }
        for s in f.samples() {
            let known = checks.sample(s.name, true);
            let legacy = known & LEGACY != 0;
            labelstr.clear();
            if esc == Escaping::AllowUtf8 && !legacy {
                labelstr.push_str(&escape_metric_name(s.name, esc));
                if !s.labels.is_empty() {
                    labelstr.push(',');
                }
            }
            push_labels(&mut labelstr, s.labels, esc, &mut checks);
            if esc != Escaping::AllowUtf8 || legacy {
                // Python escapes sample names with the label-name rune set, so a `:`
                // becomes `_` here (`a:b_total` is written `a_b_total`).
                let plain = matches!(esc, Escaping::Underscores | Escaping::AllowUtf8);
                if plain && known & PLAIN != 0 {
                    // Nothing to escape (the usual name): no allocation.
                    out.push_str(s.name);
                } else {
                    out.push_str(&escape(s.name, esc, label_rune));
                }
            }
            if !labelstr.is_empty() {
                out.push('{');
                out.push_str(&labelstr);
                out.push('}');
            }
            out.push(' ');
            push_float_go(out, s.value);
            if let Some(ts) = s.timestamp {
                push_openmetrics_timestamp(out, ts);
            }
            if let Some(e) = s.exemplar {
                push_exemplar(out, e);
            }
            out.push('\n');
        }
    }
    out.push_str("# EOF\n");
}

/// Encodes in the chosen format.
pub fn encode<'a, F: FamilyView + 'a>(
    fams: impl IntoIterator<Item = &'a F>,
    format: &Format,
) -> String {
    encode_sized(fams, format, DEFAULT_CAPACITY)
}

/// [`encode`] into a buffer of `capacity` bytes: with the previous body's size, a large
/// body is allocated once instead of doubling up to it (old and new buffer at once).
pub fn encode_sized<'a, F: FamilyView + 'a>(
    fams: impl IntoIterator<Item = &'a F>,
    format: &Format,
    capacity: usize,
) -> String {
    let mut out = String::with_capacity(capacity);
    match format {
        Format::Text(e) => write_text(&mut out, fams, *e),
        Format::OpenMetrics(e) => write_openmetrics(&mut out, fams, *e),
    }
    out
}
