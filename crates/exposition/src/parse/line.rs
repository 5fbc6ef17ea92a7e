//! One line of exposition text into tokens: metadata (`# HELP`, `# TYPE`, `# UNIT`,
//! `# EOF`), comments, and samples with labels, value, timestamp and exemplar. Knows the
//! syntax of both formats; knows nothing of families.

use crate::error::ErrorKind;
use crate::float::parse_value;
use crate::model::{Exemplar, Timestamp};
use crate::names::{is_plain_label_name, is_plain_metric_name};

/// A lexed line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Line {
    /// Nothing but blanks.
    Blank,
    /// A comment the format ignores (text only).
    Comment,
    /// `# EOF`.
    Eof,
    /// `# HELP`, `# TYPE` or `# UNIT`.
    Meta {
        /// `HELP`, `TYPE` or `UNIT`.
        what: &'static str,
        /// The family name.
        name: String,
        /// Help (unescaped), type or unit.
        text: String,
    },
    /// A sample.
    Sample(RawSample),
}

/// A sample line's parts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp: Option<Timestamp>,
    pub exemplar: Option<Exemplar>,
}

/// A cursor over one line. OpenMetrics (`om`) is strict about blanks; the text format
/// allows runs of spaces and tabs where Prometheus's lexer does.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
    om: bool,
}

fn syntax(msg: impl Into<String>) -> ErrorKind {
    ErrorKind::Syntax(msg.into())
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Skips blanks where the format allows them (text only).
    fn skip_optional_blanks(&mut self) {
        if !self.om {
            while matches!(self.peek(), Some(b' ' | b'\t')) {
                self.pos += 1;
            }
        }
    }

    /// A required separator: one space (OpenMetrics) or a run of blanks (text).
    fn separator(&mut self, what: &str) -> Result<(), ErrorKind> {
        if self.om {
            if !self.eat(b' ') {
                return Err(syntax(format!("expected a single space before {what}")));
            }
            if self.peek() == Some(b' ') {
                return Err(syntax(format!("more than one space before {what}")));
            }
            return Ok(());
        }
        if !matches!(self.peek(), Some(b' ' | b'\t')) {
            return Err(syntax(format!("expected a blank before {what}")));
        }
        self.skip_optional_blanks();
        Ok(())
    }

    /// A token up to the next blank (or end of line).
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if b == b' ' || b == b'\t' {
                break;
            }
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// `[a-zA-Z0-9_:]*` (the caller checks the first character).
    fn name_chars(&mut self) -> &'a str {
        let start = self.pos;
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// A double-quoted string with `\\`, `\"`, `\n` escapes. Other escapes are kept as
    /// written in the text format (Prometheus and Python keep them) and refused in
    /// OpenMetrics.
    fn quoted(&mut self) -> Result<String, ErrorKind> {
        if !self.eat(b'"') {
            return Err(syntax("expected '\"'"));
        }
        // Fast path: no escape before the closing quote (almost every value).
        let rest = self.rest();
        if let Some(end) = rest.find(['"', '\\'])
            && rest.as_bytes()[end] == b'"'
        {
            self.pos += end + 1;
            return Ok(rest[..end].to_string());
        }
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, other)) if !self.om => {
                        out.push('\\');
                        out.push(other);
                    }
                    Some((_, other)) => return Err(ErrorKind::InvalidEscape(other)),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err(syntax("unterminated quoted string"))
    }

    /// A metric name: plain, or quoted (UTF-8 names).
    fn metric_name(&mut self) -> Result<String, ErrorKind> {
        if self.peek() == Some(b'"') {
            let n = self.quoted()?;
            if n.is_empty() {
                return Err(ErrorKind::InvalidMetricName(n));
            }
            return Ok(n);
        }
        let start = self.pos;
        let n = self.name_chars();
        let bad = !is_plain_metric_name(n)
            || matches!(self.peek(), Some(b) if b != b' ' && b != b'\t' && b != b'{');
        if bad {
            self.pos = start;
            let tok = self.rest().split([' ', '\t', '{']).next().unwrap_or("");
            return Err(ErrorKind::InvalidMetricName(tok.to_string()));
        }
        Ok(n.to_string())
    }

    /// `{...}`: labels, and the metric name when it is given quoted inside the braces.
    fn labels(&mut self, mut name: Option<String>) -> Result<LabelSet, ErrorKind> {
        let mut labels: Vec<(String, String)> = Vec::new();
        // The caller has eaten '{'.
        loop {
            self.skip_optional_blanks();
            if self.eat(b'}') {
                break;
            }
            let (key, quoted) = if self.peek() == Some(b'"') {
                (self.quoted()?, true)
            } else {
                let start = self.pos;
                let k = self.name_chars();
                if !is_plain_label_name(k) {
                    self.pos = start;
                    let tok = self.rest().split(['=', ',', '}', ' ']).next().unwrap_or("");
                    return Err(ErrorKind::InvalidLabelName(tok.to_string()));
                }
                (k.to_string(), false)
            };
            self.skip_optional_blanks();
            if quoted && matches!(self.peek(), Some(b',' | b'}')) {
                // `{"metric.name", ...}`: the name, not a label.
                if name.is_some() {
                    return Err(syntax("metric name given twice"));
                }
                if key.is_empty() {
                    return Err(ErrorKind::InvalidMetricName(key));
                }
                name = Some(key);
            } else {
                if !self.eat(b'=') {
                    return Err(syntax(format!("expected '=' after label name {key:?}")));
                }
                self.skip_optional_blanks();
                let value = self.quoted()?;
                if key.is_empty() {
                    return Err(ErrorKind::InvalidLabelName(key));
                }
                if labels.iter().any(|(k, _)| *k == key) {
                    return Err(ErrorKind::DuplicateLabel(key));
                }
                labels.push((key, value));
            }
            self.skip_optional_blanks();
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'}') {
                break;
            }
            return Err(syntax("expected ',' or '}' in the label set"));
        }
        Ok(LabelSet { name, labels })
    }

    fn value(&mut self) -> Result<f64, ErrorKind> {
        let tok = self.token();
        parse_value(tok).ok_or_else(|| ErrorKind::InvalidValue(tok.to_string()))
    }

    fn timestamp(&mut self) -> Result<Timestamp, ErrorKind> {
        let tok = self.token();
        let bad = || ErrorKind::InvalidTimestamp(tok.to_string());
        if self.om {
            // Python's `_parse_timestamp`: an int, a decimal or a float, finite.
            let t = parse_value(tok).filter(|t| t.is_finite()).ok_or_else(bad)?;
            Ok(Timestamp::Seconds(t))
        } else {
            // Prometheus: integer milliseconds.
            tok.parse::<i64>().map(Timestamp::Millis).map_err(|_| bad())
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_optional_blanks();
        self.pos == self.s.len()
    }
}

struct LabelSet {
    name: Option<String>,
    labels: Vec<(String, String)>,
}

fn unescape_help(s: &str, om: bool) -> String {
    // Python's `_replace_help_escaping` / `_unescape_help`: unknown escapes are kept.
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if om => out.push('"'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn metadata(c: &mut Cursor<'_>) -> Result<Line, ErrorKind> {
    // After "#".
    let line = c.s;
    if c.om && line == "# EOF" {
        return Ok(Line::Eof);
    }
    if c.om {
        if !c.eat(b' ') {
            return Err(ErrorKind::InvalidComment);
        }
    } else if !matches!(c.peek(), Some(b' ' | b'\t')) {
        return Ok(Line::Comment);
    }
    c.skip_optional_blanks();
    let word = c.token();
    let what = match word {
        "HELP" => "HELP",
        "TYPE" => "TYPE",
        "UNIT" if c.om => "UNIT",
        _ if c.om => return Err(ErrorKind::InvalidComment),
        _ => return Ok(Line::Comment),
    };
    c.separator("the metric name")?;
    let name = c.metric_name()?;
    // The text after exactly one blank, so that leading blanks of a help survive.
    let text = match c.peek() {
        None if what == "HELP" && !c.om => String::new(),
        None => return Err(syntax(format!("{what} line without text"))),
        Some(b' ') | Some(b'\t') if !c.om || c.peek() == Some(b' ') => {
            c.pos += 1;
            c.rest().to_string()
        }
        Some(_) => return Err(syntax("expected a blank after the metric name")),
    };
    let text = match what {
        "HELP" => unescape_help(&text, c.om),
        _ => {
            let t = if c.om { text.as_str() } else { text.trim() };
            if t.is_empty() || t.contains([' ', '\t']) {
                return Err(syntax(format!("invalid {what} text {text:?}")));
            }
            t.to_string()
        }
    };
    Ok(Line::Meta { what, name, text })
}

fn sample(c: &mut Cursor<'_>) -> Result<Line, ErrorKind> {
    let name = if c.peek() == Some(b'{') {
        None
    } else {
        Some(c.metric_name()?)
    };
    // Text: blanks may separate the name from its labels (Prometheus and Python allow it).
    let before = c.pos;
    c.skip_optional_blanks();
    if c.peek() != Some(b'{') {
        c.pos = before;
    }
    let set = if c.eat(b'{') {
        c.labels(name)?
    } else {
        LabelSet {
            name,
            labels: Vec::new(),
        }
    };
    let Some(name) = set.name else {
        return Err(syntax("sample without a metric name"));
    };
    c.separator("the value")?;
    let value = c.value()?;
    let mut out = RawSample {
        name,
        labels: set.labels,
        value,
        timestamp: None,
        exemplar: None,
    };
    if c.at_end() {
        return Ok(Line::Sample(out));
    }
    if !c.om {
        out.timestamp = Some(c.timestamp()?);
        if !c.at_end() {
            return Err(syntax("unexpected text after the timestamp"));
        }
        return Ok(Line::Sample(out));
    }
    c.separator("the timestamp or exemplar")?;
    if c.peek() != Some(b'#') {
        out.timestamp = Some(c.timestamp()?);
        if c.at_end() {
            return Ok(Line::Sample(out));
        }
        c.separator("the exemplar")?;
    }
    if !c.rest().starts_with("# {") {
        return Err(syntax("unexpected text after the value"));
    }
    c.pos += 3;
    let set = c.labels(None)?;
    if set.name.is_some() {
        return Err(syntax("an exemplar has no metric name"));
    }
    c.separator("the exemplar value")?;
    let value = c.value()?;
    let mut ex = Exemplar {
        labels: set.labels,
        value,
        timestamp: None,
    };
    if !c.at_end() {
        c.separator("the exemplar timestamp")?;
        ex.timestamp = Some(c.timestamp()?);
        if !c.at_end() {
            return Err(syntax("unexpected text after the exemplar"));
        }
    }
    out.exemplar = Some(ex);
    Ok(Line::Sample(out))
}

/// Lexes one line (without its newline).
pub(crate) fn lex(line: &str, om: bool) -> Result<Line, ErrorKind> {
    let mut c = Cursor {
        s: line,
        pos: 0,
        om,
    };
    if !om {
        c.skip_optional_blanks();
    }
    if c.pos == line.len() {
        return if om {
            Err(ErrorKind::BlankLine)
        } else {
            Ok(Line::Blank)
        };
    }
    if c.eat(b'#') {
        return metadata(&mut c);
    }
    sample(&mut c)
}
