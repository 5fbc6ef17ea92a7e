//! Exposition: the Prometheus text format 0.0.4 exactly as `prometheus_client`'s
//! `generate_latest` writes it, OpenMetrics 1.0 as `openmetrics.exposition.generate_latest`
//! writes it, Python's `choose_encoder` content negotiation, and `floatToGoString`.

use std::fmt::Write as _;

use crate::merge::MergedFamily;

/// Python's `floatToGoString`: `repr()` digits, Go-style `e+06` for positives >= 1e6.
pub fn float_to_go_string(d: f64) -> String {
    if d == f64::INFINITY {
        return "+Inf".into();
    }
    if d == f64::NEG_INFINITY {
        return "-Inf".into();
    }
    if d.is_nan() {
        return "NaN".into();
    }
    let s = python_repr(d);
    if d > 0.0
        && let Some(dot) = s.find('.')
        && dot > 6
    {
        let mut m = String::with_capacity(s.len() + 1);
        m.push_str(&s[..1]);
        m.push('.');
        m.push_str(&s[1..dot]);
        m.push_str(&s[dot + 1..]);
        let m = m.trim_end_matches(['0', '.']);
        return format!("{m}e+{:02}", dot - 1);
    }
    s
}

/// Python's `repr(float)` for finite values: Rust's shortest round-trip digits (same
/// digits and notation thresholds) with Python's exponent spelling (`e+16`, `e-05`).
pub fn python_repr(d: f64) -> String {
    let s = format!("{d:?}");
    match s.find('e') {
        None => s,
        Some(e) => {
            let (mant, exp) = (&s[..e], &s[e + 1..]);
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mant}e{sign}{digits:0>2}")
        }
    }
}

/// Name escaping scheme (`escaping=` parameter of the Accept header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Which encoder a scrape gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4` (also `version=1.0.0` with an escaping).
    Text(Escaping),
    /// OpenMetrics text.
    OpenMetrics(Escaping),
}

/// Content type of the 0.0.4 text format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics 1.0.0.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn get_param<'a>(toks: &[&'a str], name: &str) -> Option<&'a str> {
    for tok in toks {
        if let Some((k, v)) = tok.trim().split_once('=')
            && k == name
        {
            return Some(v);
        }
    }
    None
}

fn get_escaping(toks: &[&str]) -> Escaping {
    for tok in toks {
        if let Some((k, v)) = tok.trim().split_once('=') {
            if k != "escaping" {
                continue;
            }
            return match v {
                "allow-utf-8" => Escaping::AllowUtf8,
                "dots" => Escaping::Dots,
                "values" => Escaping::Values,
                _ => Escaping::Underscores,
            };
        }
    }
    Escaping::Underscores
}

fn version_at_least_1(v: &str) -> bool {
    let mut parts = Vec::new();
    for p in v.split('.') {
        match p.trim().parse::<i64>() {
            Ok(n) => parts.push(n),
            // Python would compare str with int here and fail; we decline the format.
            Err(_) => return false,
        }
    }
    parts.as_slice() >= [1i64, 0, 0].as_slice()
}

/// Python's `choose_encoder`: the format and the Content-Type for an Accept header.
pub fn choose_format(accept: &str) -> (Format, String) {
    for accepted in accept.split(',') {
        let toks: Vec<&str> = accepted.split(';').collect();
        let mime = toks[0].trim();
        if mime == "application/openmetrics-text" {
            let version = get_param(&toks, "version").unwrap_or("");
            let escaping = get_escaping(&toks);
            if version.is_empty() {
                return (
                    Format::OpenMetrics(Escaping::Underscores),
                    CONTENT_TYPE_OPENMETRICS.into(),
                );
            }
            if version_at_least_1(version) {
                return (
                    Format::OpenMetrics(escaping),
                    format!(
                        "application/openmetrics-text; version={version}; charset=utf-8; escaping={}",
                        escaping.as_str()
                    ),
                );
            }
        } else if mime == "text/plain" {
            let version = get_param(&toks, "version").unwrap_or("");
            let escaping = get_escaping(&toks);
            if !version.is_empty() && version_at_least_1(version) {
                return (
                    Format::Text(escaping),
                    format!(
                        "text/plain; version=1.0.0; charset=utf-8; escaping={}",
                        escaping.as_str()
                    ),
                );
            }
        }
    }
    (
        Format::Text(Escaping::Underscores),
        CONTENT_TYPE_TEXT.into(),
    )
}

/// Python's `gzip_accepted`.
pub fn gzip_accepted(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|a| {
        a.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("gzip")
    })
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

fn label_rune(c: char, i: usize) -> bool {
    c.is_ascii_alphabetic() || c == '_' || (c.is_ascii_digit() && i > 0)
}

fn metric_rune(c: char, i: usize) -> bool {
    label_rune(c, i) || c == ':'
}

/// Backslash, newline and double quote escaped (label values, OpenMetrics help).
fn escape_value(s: &str) -> String {
    s.replace('\\', r"\\")
        .replace('\n', r"\n")
        .replace('"', r#"\""#)
}

fn escape(s: &str, esc: Escaping, valid: fn(char, usize) -> bool) -> String {
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

fn escape_metric_name(s: &str, esc: Escaping) -> String {
    if s.is_empty() {
        return String::new();
    }
    let legacy = is_valid_legacy_metric_name(s);
    match esc {
        Escaping::AllowUtf8 if !legacy => format!("\"{}\"", escape(s, esc, metric_rune)),
        Escaping::Underscores | Escaping::Values if legacy => s.to_string(),
        _ => escape(s, esc, metric_rune),
    }
}

fn escape_label_name(s: &str, esc: Escaping) -> String {
    if s.is_empty() {
        return String::new();
    }
    let legacy = is_valid_legacy_label_name(s);
    match esc {
        Escaping::AllowUtf8 if !legacy => format!("\"{}\"", escape(s, esc, label_rune)),
        Escaping::Underscores | Escaping::Values if legacy => s.to_string(),
        _ => escape(s, esc, label_rune),
    }
}

/// Writes `s` with backslash, newline and double quote escaped, without allocating when
/// there is nothing to escape (the common case).
fn push_escaped_value(out: &mut String, s: &str) {
    if !s.contains(['\\', '\n', '"']) {
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

fn push_metric_name(out: &mut String, s: &str, esc: Escaping) {
    if matches!(esc, Escaping::Underscores | Escaping::Values) && is_valid_legacy_metric_name(s) {
        out.push_str(s);
    } else {
        out.push_str(&escape_metric_name(s, esc));
    }
}

fn push_label_name(out: &mut String, s: &str, esc: Escaping) {
    if matches!(esc, Escaping::Underscores | Escaping::Values) && is_valid_legacy_label_name(s) {
        out.push_str(s);
    } else {
        out.push_str(&escape_label_name(s, esc));
    }
}

type Label = (std::sync::Arc<str>, std::sync::Arc<str>);

/// Writes `k="v",...` sorted by name (then value, as Python sorts the items).
fn push_labels(out: &mut String, labels: &[Label], esc: Escaping) {
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
        labels[a]
            .0
            .cmp(&labels[b].0)
            .then_with(|| labels[a].1.cmp(&labels[b].1))
    });
    for (n, &i) in idx.iter().enumerate() {
        let (k, v) = &labels[i];
        if n > 0 {
            out.push(',');
        }
        push_label_name(out, k, esc);
        out.push_str("=\"");
        push_escaped_value(out, v);
        out.push('"');
    }
}

fn label_str(labels: &[Label], esc: Escaping) -> String {
    let mut o = String::new();
    push_labels(&mut o, labels, esc);
    o
}

fn text_sample(out: &mut String, s: &crate::merge::MergedSample, esc: Escaping) {
    if esc != Escaping::AllowUtf8 || is_valid_legacy_metric_name(&s.name) {
        push_metric_name(out, &s.name, esc);
        if !s.labels.is_empty() {
            out.push('{');
            push_labels(out, &s.labels, esc);
            out.push('}');
        }
    } else {
        out.push('{');
        out.push_str(&escape_metric_name(&s.name, esc));
        if !s.labels.is_empty() {
            out.push(',');
            push_labels(out, &s.labels, esc);
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&float_to_go_string(s.value));
    if let Some(ts) = s.timestamp {
        // The fork's `generate_latest`: ' {0:d}'.format(int(float(ts) * 1000)).
        let _ = write!(out, " {:.0}", (ts * 1000.0).trunc() + 0.0);
    }
    out.push('\n');
}

fn help_004(s: &str) -> String {
    s.replace('\\', r"\\").replace('\n', r"\n")
}

/// The text format (`generate_latest`), with the given name escaping.
pub fn encode_text<'a>(fams: impl IntoIterator<Item = &'a MergedFamily>, esc: Escaping) -> String {
    encode_text_sized(fams, esc, 1 << 16)
}

fn encode_text_sized<'a>(
    fams: impl IntoIterator<Item = &'a MergedFamily>,
    esc: Escaping,
    capacity: usize,
) -> String {
    let mut out = String::with_capacity(capacity);
    for f in fams {
        let (mname, mtype) = match f.typ.as_str() {
            "counter" => (format!("{}_total", f.name), "counter"),
            "info" => (format!("{}_info", f.name), "gauge"),
            "stateset" => (f.name.to_string(), "gauge"),
            "gaugehistogram" => (f.name.to_string(), "histogram"),
            "unknown" => (f.name.to_string(), "untyped"),
            t => (f.name.to_string(), t),
        };
        let ename = escape_metric_name(&mname, esc);
        let _ = writeln!(out, "# HELP {ename} {}", help_004(&f.help));
        let _ = writeln!(out, "# TYPE {ename} {mtype}");
        let mut om: Vec<(&str, String)> = Vec::new();
        for s in &f.samples {
            let suffix = ["_created", "_gsum", "_gcount"].into_iter().find(|suf| {
                s.name.len() == f.name.len() + suf.len()
                    && s.name.starts_with(&*f.name)
                    && s.name.ends_with(suf)
            });
            match suffix {
                Some(suf) => {
                    let mut line = String::new();
                    text_sample(&mut line, s, esc);
                    match om.iter_mut().find(|o| o.0 == suf) {
                        Some(o) => o.1.push_str(&line),
                        None => om.push((suf, line)),
                    }
                }
                None => text_sample(&mut out, s, esc),
            }
        }
        om.sort_by(|a, b| a.0.cmp(b.0));
        for (suf, lines) in om {
            let n = escape_metric_name(&format!("{}{suf}", f.name), esc);
            let _ = writeln!(out, "# HELP {n} {}", help_004(&f.help));
            let _ = writeln!(out, "# TYPE {n} gauge");
            out.push_str(&lines);
        }
    }
    out
}

/// OpenMetrics 1.0 text (`openmetrics.exposition.generate_latest`), ending in `# EOF`.
pub fn encode_openmetrics<'a>(
    fams: impl IntoIterator<Item = &'a MergedFamily>,
    esc: Escaping,
) -> String {
    encode_openmetrics_sized(fams, esc, 1 << 16)
}

fn encode_openmetrics_sized<'a>(
    fams: impl IntoIterator<Item = &'a MergedFamily>,
    esc: Escaping,
    capacity: usize,
) -> String {
    let mut out = String::with_capacity(capacity);
    for f in fams {
        let ename = escape_metric_name(&f.name, esc);
        let _ = writeln!(out, "# HELP {ename} {}", escape_value(&f.help));
        let _ = writeln!(out, "# TYPE {ename} {}", f.typ);
        for s in &f.samples {
            let legacy = is_valid_legacy_metric_name(&s.name);
            let mut labelstr = String::new();
            if esc == Escaping::AllowUtf8 && !legacy {
                labelstr.push_str(&escape_metric_name(&s.name, esc));
                if !s.labels.is_empty() {
                    labelstr.push(',');
                }
            }
            labelstr.push_str(&label_str(&s.labels, esc));
            if !labelstr.is_empty() {
                labelstr = format!("{{{labelstr}}}");
            }
            let mut value = float_to_go_string(s.value);
            if let Some(ts) = s.timestamp {
                // The fork's OpenMetrics encoder: ' {0}'.format(timestamp), in seconds.
                value.push(' ');
                value.push_str(&python_repr(ts));
            }
            if esc != Escaping::AllowUtf8 || legacy {
                let _ = writeln!(
                    out,
                    "{}{labelstr} {value}",
                    escape(&s.name, esc, label_rune)
                );
            } else {
                let _ = writeln!(out, "{labelstr} {value}");
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Encodes in the chosen format.
pub fn encode<'a>(fams: impl IntoIterator<Item = &'a MergedFamily>, format: &Format) -> String {
    encode_sized(fams, format, 1 << 16)
}

/// [`encode`] into a buffer of `capacity` bytes: with the previous body's size, a large
/// body is allocated once instead of doubling up to it (old and new buffer at once).
pub fn encode_sized<'a>(
    fams: impl IntoIterator<Item = &'a MergedFamily>,
    format: &Format,
    capacity: usize,
) -> String {
    match format {
        Format::Text(e) => encode_text_sized(fams, *e, capacity),
        Format::OpenMetrics(e) => encode_openmetrics_sized(fams, *e, capacity),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_like_the_fork() {
        let fam = MergedFamily {
            name: "t".into(),
            help: "h".into(),
            typ: "gauge".into(),
            samples: vec![
                crate::merge::MergedSample {
                    name: "t".into(),
                    labels: vec![],
                    value: 1.0,
                    timestamp: Some(1796004087.0623777),
                },
                crate::merge::MergedSample {
                    name: "t".into(),
                    labels: vec![("a".into(), "b".into())],
                    value: 2.0,
                    timestamp: Some(-0.0001),
                },
            ],
        };
        assert_eq!(
            encode_text([&fam], Escaping::Underscores),
            "# HELP t h\n# TYPE t gauge\nt 1.0 1796004087062\nt{a=\"b\"} 2.0 0\n"
        );
        assert!(
            encode_openmetrics([&fam], Escaping::Underscores)
                .contains("t 1.0 1796004087.0623777\n")
        );
    }

    #[test]
    fn float_to_go_string_matches_python() {
        for (v, want) in [
            (1e16, "1e+16"),
            (1e15, "1e+15"),
            (9999999999999998.0, "9.999999999999998e+15"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (1e-5, "1e-05"),
            (1e-4, "0.0001"),
            (5e-324, "5e-324"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1e22, "1e+22"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1234567.0, "1.234567e+06"),
            (999999.0, "999999.0"),
            (12345678901.0, "1.2345678901e+10"),
            (1e100, "1e+100"),
            (-1e16, "-1e+16"),
            (-1234567.0, "-1234567.0"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (1000000.0, "1e+06"),
            (0.005, "0.005"),
            (10.0, "10.0"),
        ] {
            assert_eq!(float_to_go_string(v), want, "{v:?}");
        }
    }

    #[test]
    fn accept_negotiation_follows_choose_encoder() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let (f, ct) = choose_format(prom);
        assert_eq!(f, Format::OpenMetrics(Escaping::Underscores));
        assert_eq!(
            ct,
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
        );
        assert_eq!(
            choose_format("application/openmetrics-text").1,
            CONTENT_TYPE_OPENMETRICS
        );
        assert_eq!(choose_format("").1, CONTENT_TYPE_TEXT);
        assert_eq!(
            choose_format("application/openmetrics-text;version=0.0.1").1,
            CONTENT_TYPE_TEXT
        );
        assert_eq!(
            choose_format("text/plain;version=1.0.0;escaping=allow-utf-8").0,
            Format::Text(Escaping::AllowUtf8)
        );
        assert!(gzip_accepted("br, gzip;q=1"));
        assert!(!gzip_accepted("identity"));
    }

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
}
