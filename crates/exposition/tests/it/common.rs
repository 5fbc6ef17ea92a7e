//! Families shared by the tests: every type, odd floats, escapes, UTF-8, timestamps and
//! exemplars.

use exposition::{Exemplar, MetricFamily, MetricType, Sample, Timestamp};

fn fam(name: &str, help: &str, typ: MetricType, samples: Vec<Sample>) -> MetricFamily {
    let mut f = MetricFamily::new(name, help, typ);
    f.samples = samples;
    f
}

fn s(name: &str, labels: &[(&str, &str)], v: f64) -> Sample {
    Sample::new(name, labels, v)
}

/// One family of every type with the values and strings that are easy to get wrong.
pub fn odd_families() -> Vec<MetricFamily> {
    let odd = [
        1e-05,
        1e22,
        123456789.0,
        -0.0,
        0.0,
        5e-324,
        1e16,
        1234567.0,
        -1234567.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    let gauge = odd
        .iter()
        .enumerate()
        .map(|(i, v)| s("g", &[("i", &i.to_string())], *v))
        .chain([{
            let mut t = s("g", &[("i", "ms")], 1.0);
            t.timestamp = Some(Timestamp::Millis(1700000000123));
            t
        }])
        .collect();
    let mut counter = vec![
        s(
            "c_total",
            &[("a", "1"), ("path", "back\\slash new\nline \"q\" ü ☃")],
            3.0,
        ),
        s("c_created", &[("a", "1"), ("path", "x")], 1700000000.25),
    ];
    counter[0].exemplar = Some(Exemplar {
        labels: vec![("trace_id".into(), "abc".into())],
        value: 0.5,
        timestamp: Some(Timestamp::Seconds(1700000000.5)),
    });
    let mut hist = vec![
        s("h_bucket", &[("le", "0.005")], 1.0),
        s("h_bucket", &[("le", "1e+06")], 2.0),
        s("h_bucket", &[("le", "+Inf")], 3.0),
        s("h_count", &[], 3.0),
        s("h_sum", &[], 2.5),
    ];
    hist[1].exemplar = Some(Exemplar {
        // Not `x"y`: Python's OpenMetrics parser fails on an escaped quote in an exemplar
        // label (its encoder writes one; the byte-for-byte oracle test covers that case).
        labels: vec![("id".into(), "x y".into())],
        value: 7.0,
        timestamp: None,
    });
    let mut unit = fam(
        "temp_celsius",
        "",
        MetricType::Gauge,
        vec![{
            let mut t = s("temp_celsius", &[], 21.5);
            t.timestamp = Some(Timestamp::Seconds(1700000000.123));
            t
        }],
    );
    unit.unit = "celsius".into();
    vec![
        fam(
            "c",
            "help: \\ backslash, \n newline, \"quote\", ü",
            MetricType::Counter,
            counter,
        ),
        fam("g", "odd values", MetricType::Gauge, gauge),
        fam("h", "histogram", MetricType::Histogram, hist),
        fam(
            "sm",
            "summary",
            MetricType::Summary,
            vec![
                s("sm", &[("quantile", "0.5")], 0.25),
                s("sm_count", &[], 3.0),
                s("sm_sum", &[], 1.5),
            ],
        ),
        fam(
            "gh",
            "gauge histogram",
            MetricType::GaugeHistogram,
            vec![
                s("gh_bucket", &[("le", "+Inf")], 3.0),
                s("gh_gcount", &[], 3.0),
                s("gh_gsum", &[], 4.0),
            ],
        ),
        fam(
            "build",
            "info",
            MetricType::Info,
            vec![s("build_info", &[("version", "1.2")], 1.0)],
        ),
        fam(
            "st",
            "stateset",
            MetricType::StateSet,
            vec![s("st", &[("st", "a")], 1.0), s("st", &[("st", "b")], 0.0)],
        ),
        fam(
            "u",
            "unknown",
            MetricType::Unknown,
            vec![s("u", &[("k", "v")], 42.0)],
        ),
        unit,
        fam("empty", "", MetricType::Gauge, vec![]),
    ]
}

/// The families the text format can carry as they are: its types, no `_created` samples,
/// and no unit (the text format has no UNIT line).
pub fn text_expressible(all: &[MetricFamily]) -> Vec<MetricFamily> {
    all.iter()
        .filter(|f| {
            matches!(
                f.typ,
                MetricType::Counter
                    | MetricType::Gauge
                    | MetricType::Histogram
                    | MetricType::Summary
                    | MetricType::Unknown
            ) && f.unit.is_empty()
        })
        .map(|f| {
            let mut f = f.clone();
            f.samples.retain(|s| !s.name.ends_with("_created"));
            f
        })
        .collect()
}
