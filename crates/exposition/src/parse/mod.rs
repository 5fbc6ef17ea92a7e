//! The parser and validator of exposition text: [`parse`] returns the families or the
//! first error, [`validate`] every error. Rules follow Prometheus's text parser and
//! prometheus_client's parsers; where they differ, what Prometheus accepts.

mod families;
mod line;

use crate::error::{ErrorKind, ParseError};
use crate::model::MetricFamily;
use crate::negotiate::Format;

/// Families and every error found (a bad line is reported and skipped).
fn run(input: &str, om: bool) -> (Vec<MetricFamily>, Vec<ParseError>) {
    let mut b = families::Builder::new(om);
    // A final newline ends the last line; it does not start an empty one.
    let body = input.strip_suffix('\n').unwrap_or(input);
    let mut last = 0;
    if !body.is_empty() {
        for (i, l) in body.split('\n').enumerate() {
            last = i + 1;
            b.line(last, l);
        }
    }
    b.finish(last.max(1))
}

fn is_om(format: Format) -> bool {
    matches!(format, Format::OpenMetrics(_))
}

/// Parses exposition text in `format` (its escaping is ignored: names are read as they
/// are written, quoted or not).
pub fn parse(input: &str, format: Format) -> Result<Vec<MetricFamily>, ParseError> {
    let (fams, errors) = run(input, is_om(format));
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(fams),
    }
}

/// Every problem in `input`, in line order; empty when it is valid.
pub fn validate(input: &str, format: Format) -> Vec<ParseError> {
    let mut errors = run(input, is_om(format)).1;
    errors.sort_by_key(|e| e.line);
    errors
}

/// [`parse`] of bytes: invalid UTF-8 is an error at the line where it occurs.
pub fn parse_bytes(input: &[u8], format: Format) -> Result<Vec<MetricFamily>, ParseError> {
    match std::str::from_utf8(input) {
        Ok(s) => parse(s, format),
        Err(e) => {
            let line = 1 + input[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            Err(ParseError {
                line,
                kind: ErrorKind::InvalidUtf8,
            })
        }
    }
}
