//! One test per error class: the line and the reason.

use exposition::{ErrorKind, Escaping, Format, ParseError, parse, parse_bytes, validate};

const TEXT: Format = Format::Text(Escaping::Underscores);
const OM: Format = Format::OpenMetrics(Escaping::Underscores);

/// The first error of `input`, which must be at `line`.
fn first(input: &str, format: Format, line: usize) -> ErrorKind {
    let e: ParseError = parse(input, format).expect_err("must be refused");
    assert_eq!(e.line, line, "{e}");
    // The message names the line too.
    assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
    e.kind
}

#[test]
fn invalid_metric_name() {
    let k = first("# TYPE a gauge\na 1\n1abc 2\n", TEXT, 3);
    assert_eq!(k, ErrorKind::InvalidMetricName("1abc".into()));
    let k = first("a-b 1\n", TEXT, 1);
    assert_eq!(k, ErrorKind::InvalidMetricName("a-b".into()));
}

#[test]
fn invalid_label_name() {
    let k = first("a{1x=\"v\"} 1\n", TEXT, 1);
    assert_eq!(k, ErrorKind::InvalidLabelName("1x".into()));
    let k = first("a{b.c=\"v\"} 1\n", TEXT, 1);
    assert!(matches!(k, ErrorKind::Syntax(_)), "{k}");
}

#[test]
fn duplicate_label_name() {
    let k = first("a{x=\"1\",x=\"2\"} 1\n", TEXT, 1);
    assert_eq!(k, ErrorKind::DuplicateLabel("x".into()));
}

#[test]
fn invalid_value_and_timestamp() {
    assert_eq!(
        first("a 1\nb one\n", TEXT, 2),
        ErrorKind::InvalidValue("one".into())
    );
    assert_eq!(
        first("a 1_000\n", TEXT, 1),
        ErrorKind::InvalidValue("1_000".into())
    );
    assert_eq!(
        first("a 1 1.5\n", TEXT, 1),
        ErrorKind::InvalidTimestamp("1.5".into())
    );
    assert_eq!(
        first("a 1 NaN\n# EOF\n", OM, 1),
        ErrorKind::InvalidTimestamp("NaN".into())
    );
}

#[test]
fn sample_outside_its_family() {
    let k = first("# TYPE foo gauge\nfoo 1\nfoo_bucket{le=\"1\"} 2\n", TEXT, 3);
    assert_eq!(
        k,
        ErrorKind::SampleOutsideFamily {
            sample: "foo_bucket".into(),
            family: "foo".into(),
            typ: "gauge".into(),
            suffix: "_bucket".into(),
        }
    );
    // An OpenMetrics counter's samples are `_total` and `_created`, never the bare name.
    let k = first("# TYPE foo counter\nfoo_count 1\n# EOF\n", OM, 2);
    assert!(matches!(k, ErrorKind::SampleOutsideFamily { .. }), "{k}");
}

#[test]
fn type_after_samples() {
    let k = first("foo 1\n# TYPE foo gauge\n", TEXT, 2);
    assert_eq!(
        k,
        ErrorKind::MetadataAfterSamples {
            what: "TYPE",
            name: "foo".into()
        }
    );
}

#[test]
fn duplicate_and_inconsistent_type() {
    let k = first("# TYPE foo gauge\n# TYPE foo counter\nfoo 1\n", TEXT, 2);
    assert_eq!(
        k,
        ErrorKind::DuplicateType {
            name: "foo".into(),
            first: "gauge".into(),
            second: "counter".into()
        }
    );
    let k = first("# TYPE foo gauge\n# TYPE foo gauge\n", TEXT, 2);
    assert!(matches!(k, ErrorKind::DuplicateType { .. }));
    assert_eq!(
        first("# TYPE foo gaugeish\n", TEXT, 1),
        ErrorKind::UnknownType("gaugeish".into())
    );
    // `untyped` is text only.
    assert_eq!(
        first("# TYPE foo untyped\n# EOF\n", OM, 1),
        ErrorKind::UnknownType("untyped".into())
    );
}

#[test]
fn duplicate_series() {
    let k = first("a{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 2\n", TEXT, 2);
    assert!(
        matches!(k, ErrorKind::DuplicateSeries { first_line: 1, ref series } if series.starts_with("a{")),
        "{k}"
    );
    // The same series at two timestamps is history, not a duplicate.
    assert!(parse("a 1 1000\na 2 2000\n", TEXT).is_ok());
}

#[test]
fn missing_le_and_quantile() {
    let k = first("# TYPE h histogram\nh_bucket{x=\"1\"} 1\n", TEXT, 2);
    assert_eq!(
        k,
        ErrorKind::MissingLabel {
            sample: "h_bucket".into(),
            label: "le"
        }
    );
    let k = first("# TYPE s summary\ns_sum 1\ns 1\n", TEXT, 3);
    assert_eq!(
        k,
        ErrorKind::MissingLabel {
            sample: "s".into(),
            label: "quantile"
        }
    );
    let k = first("# TYPE h histogram\nh_bucket{le=\"x\"} 1\n", TEXT, 2);
    assert_eq!(
        k,
        ErrorKind::InvalidLabelValue {
            label: "le",
            value: "x".into()
        }
    );
}

#[test]
fn family_split_in_two() {
    let k = first("# TYPE a gauge\na 1\nb 1\na{x=\"1\"} 2\n", TEXT, 4);
    assert_eq!(
        k,
        ErrorKind::FamilySplit {
            name: "a".into(),
            first_line: 1
        }
    );
}

#[test]
fn openmetrics_framing() {
    assert_eq!(first("a 1\n", OM, 1), ErrorKind::MissingEof);
    assert_eq!(first("", OM, 1), ErrorKind::MissingEof);
    assert_eq!(first("a 1\n\n# EOF\n", OM, 2), ErrorKind::BlankLine);
    assert_eq!(first("# EOF\na 1\n", OM, 2), ErrorKind::AfterEof);
    assert_eq!(first("# hello\n# EOF\n", OM, 1), ErrorKind::InvalidComment);
    assert_eq!(
        first(
            "# TYPE a_seconds gauge\n# UNIT a_seconds bytes\n# EOF\n",
            OM,
            2
        ),
        ErrorKind::UnitMismatch {
            name: "a_seconds".into(),
            unit: "bytes".into()
        }
    );
    assert_eq!(
        first("a{x=\"\\t\"} 1\n# EOF\n", OM, 1),
        ErrorKind::InvalidEscape('t')
    );
    assert_eq!(
        first("# TYPE a gauge\na 1 # {x=\"1\"} 1\n# EOF\n", OM, 2),
        ErrorKind::ExemplarNotAllowed("a".into())
    );
    // The text format allows blank lines, free comments, and no EOF.
    assert!(parse("\n# hello\na 1\n\n", TEXT).is_ok());
}

#[test]
fn validate_reports_every_problem_in_line_order() {
    let errors = validate("a 1\nb{ 1\nc x\na 2\n", TEXT);
    let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 3, 4], "{errors:?}");
    assert!(validate("a 1\n", TEXT).is_empty());
}

#[test]
fn invalid_utf8_names_its_line() {
    let e = parse_bytes(b"a 1\nb{x=\"\xff\"} 1\n", TEXT).unwrap_err();
    assert_eq!((e.line, e.kind), (2, ErrorKind::InvalidUtf8));
}

#[test]
fn lenient_text_forms_prometheus_accepts() {
    let fams = parse(
        "# HELP a  two spaces\n# TYPE a counter\na {x=\"1\",} \t+Inf -5\n",
        TEXT,
    )
    .unwrap();
    assert_eq!(fams[0].help, " two spaces");
    assert_eq!(fams[0].samples[0].value, f64::INFINITY);
    assert_eq!(
        fams[0].samples[0].timestamp,
        Some(exposition::Timestamp::Millis(-5))
    );
}
