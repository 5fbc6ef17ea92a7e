//! The encoders on hand-written expectations: timestamps as upstream and the postmates
//! fork write them, `_created` gauges in text, exemplars, name escaping.

use exposition::{
    Escaping, Exemplar, Format, MetricFamily, MetricType, Sample, Timestamp, encode,
    encode_openmetrics, encode_text,
};

fn gauge_with(ts: Timestamp) -> Vec<MetricFamily> {
    let mut f = MetricFamily::new("g", "h", MetricType::Gauge);
    let mut s = Sample::new("g", &[("b", "2"), ("a", "1")], 1.5);
    s.timestamp = Some(ts);
    f.samples.push(s);
    vec![f]
}

#[test]
fn timestamps_are_written_as_python_writes_them() {
    // Upstream and the fork: text `int(float(ts) * 1000)`, OpenMetrics `str(ts)`.
    let f = gauge_with(Timestamp::Seconds(1700000000.123));
    assert_eq!(
        encode_text(&f, Escaping::Underscores),
        "# HELP g h\n# TYPE g gauge\ng{a=\"1\",b=\"2\"} 1.5 1700000000123\n"
    );
    assert_eq!(
        encode_openmetrics(&f, Escaping::Underscores),
        "# HELP g h\n# TYPE g gauge\ng{a=\"1\",b=\"2\"} 1.5 1700000000.123\n# EOF\n"
    );
    // The values of the fork's own expose.rs test (its `latest` gauges' timestamps).
    let f = gauge_with(Timestamp::Seconds(1796004087.0623777));
    assert!(encode_text(&f, Escaping::Underscores).ends_with(" 1.5 1796004087062\n"));
    assert!(encode_openmetrics(&f, Escaping::Underscores).contains(" 1.5 1796004087.0623777\n"));
    let f = gauge_with(Timestamp::Seconds(-0.0001));
    assert!(encode_text(&f, Escaping::Underscores).ends_with(" 1.5 0\n"));
    // int() truncates toward zero: 0.0015 s is 1 ms; -0.0015 s is -1 ms.
    let f = gauge_with(Timestamp::Seconds(0.0015));
    assert!(encode_text(&f, Escaping::Underscores).ends_with(" 1.5 1\n"));
    let f = gauge_with(Timestamp::Seconds(-0.0015));
    assert!(encode_text(&f, Escaping::Underscores).ends_with(" 1.5 -1\n"));
    let f = gauge_with(Timestamp::Seconds(-0.0));
    assert!(encode_text(&f, Escaping::Underscores).ends_with(" 1.5 0\n"));
    // Milliseconds (what the text parser returns) stay milliseconds.
    let f = gauge_with(Timestamp::Millis(-1500));
    assert!(encode_text(&f, Escaping::Underscores).ends_with(" 1.5 -1500\n"));
    assert!(encode_openmetrics(&f, Escaping::Underscores).ends_with(" 1.5 -1.500\n# EOF\n"));
}

#[test]
fn created_samples_become_trailing_gauges_in_text() {
    let mut f = MetricFamily::new("c", "a \"q\"\\", MetricType::Counter);
    f.samples = vec![
        Sample::new("c_total", &[], 1.0),
        Sample::new("c_created", &[], 1.7e9),
    ];
    let mut ex = Sample::new("c_total", &[("x", "y")], 2.0);
    ex.exemplar = Some(Exemplar {
        labels: vec![("z".into(), "1".into()), ("a".into(), "\n".into())],
        value: 1.0,
        timestamp: None,
    });
    f.samples.push(ex);
    let fams = vec![f];
    assert_eq!(
        encode(&fams, &Format::Text(Escaping::Underscores)),
        "# HELP c_total a \"q\"\\\\\n# TYPE c_total counter\nc_total 1.0\nc_total{x=\"y\"} 2.0\n\
         # HELP c_created a \"q\"\\\\\n# TYPE c_created gauge\nc_created 1.7e+09\n"
    );
    assert_eq!(
        encode(&fams, &Format::OpenMetrics(Escaping::Underscores)),
        "# HELP c a \\\"q\\\"\\\\\n# TYPE c counter\nc_total 1.0\nc_created 1.7e+09\n\
         c_total{x=\"y\"} 2.0 # {a=\"\\n\",z=\"1\"} 1.0\n# EOF\n"
    );
}

#[test]
fn utf8_names_are_quoted_or_escaped() {
    let mut f = MetricFamily::new("a.b", "", MetricType::Gauge);
    f.samples.push(Sample::new("a.b", &[("c.d", "v")], 1.0));
    let fams = vec![f];
    assert_eq!(
        encode_text(&fams, Escaping::AllowUtf8),
        "# HELP \"a.b\" \n# TYPE \"a.b\" gauge\n{\"a.b\",\"c.d\"=\"v\"} 1.0\n"
    );
    assert_eq!(
        encode_text(&fams, Escaping::Underscores),
        "# HELP a_b \n# TYPE a_b gauge\na_b{c_d=\"v\"} 1.0\n"
    );
    let parsed = exposition::parse(
        &encode_text(&fams, Escaping::AllowUtf8),
        Format::Text(Escaping::AllowUtf8),
    )
    .unwrap();
    assert_eq!(parsed, fams);
}
