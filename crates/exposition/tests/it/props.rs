//! Property tests (issue 20, item 3): encode then parse is the identity on valid families,
//! in both formats; a repeated line is refused on its copy; arbitrary text never panics and
//! every error names a line of the input.
//! `PROPTEST_CASES=100000 cargo test -p exposition --test it props` runs them longer.

use exposition::{
    Escaping, Exemplar, Format, MetricFamily, MetricType, Sample, Timestamp, encode,
    float_to_go_string, parse, validate,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Strings with everything that needs escaping, and UTF-8.
fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 \\\\\"\n\r\tü☃{},=#]{0,8}"
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-h][a-z0-9_]{0,4}"
}

fn labels() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::btree_map(label_name(), text(), 0..3).prop_map(|m| m.into_iter().collect())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Which {
    Text,
    OpenMetrics,
}

fn timestamp(which: Which) -> BoxedStrategy<Option<Timestamp>> {
    match which {
        Which::Text => prop::option::of(any::<i64>().prop_map(Timestamp::Millis)).boxed(),
        Which::OpenMetrics => prop::option::of(
            any::<f64>()
                .prop_filter("finite", |t| t.is_finite())
                .prop_map(Timestamp::Seconds),
        )
        .boxed(),
    }
}

fn exemplar() -> impl Strategy<Value = Option<Exemplar>> {
    prop::option::of(
        (labels(), any::<f64>(), prop::option::of(-1e12f64..1e12)).prop_map(
            |(labels, value, ts)| Exemplar {
                labels,
                value,
                timestamp: ts.map(Timestamp::Seconds),
            },
        ),
    )
}

/// One raw sample: suffix index, labels, value, timestamp, exemplar.
type Raw = (
    usize,
    Vec<(String, String)>,
    f64,
    Option<Timestamp>,
    Option<Exemplar>,
);

fn family(which: Which, index: usize) -> impl Strategy<Value = MetricFamily> {
    let types: Vec<MetricType> = match which {
        Which::Text => vec![
            MetricType::Counter,
            MetricType::Gauge,
            MetricType::Histogram,
            MetricType::Summary,
            MetricType::Unknown,
        ],
        Which::OpenMetrics => MetricType::ALL.to_vec(),
    };
    let raw = (
        0usize..4,
        labels(),
        any::<f64>(),
        timestamp(which),
        exemplar(),
    );
    (
        prop::sample::select(types),
        "[a-z]{0,5}",
        text(),
        prop::collection::vec(raw, 0..6),
        any::<f64>(),
    )
        .prop_map(move |(typ, name, help, raws, bound)| {
            build(which, index, typ, name, help, raws, bound)
        })
}

fn build(
    which: Which,
    index: usize,
    typ: MetricType,
    name: String,
    help: String,
    raws: Vec<Raw>,
    bound: f64,
) -> MetricFamily {
    // A distinct prefix and no underscore: no family's name is another's plus a suffix.
    let name = format!("f{index}{name}");
    let mut f = MetricFamily::new(name.clone(), help, typ);
    let suffixes: &[&str] = match (which, typ) {
        (Which::Text, MetricType::Counter) => &["_total"],
        (Which::Text, t) => t.text_suffixes(),
        (_, MetricType::Info) => &["_info"],
        (_, t) => t.openmetrics_suffixes(),
    };
    for (n, (suffix, mut labels, value, timestamp, exemplar)) in raws.into_iter().enumerate() {
        let suffix = suffixes[suffix % suffixes.len()];
        // A distinct `i` label: no two samples are one series.
        labels.retain(|(k, _)| k != "le" && k != "quantile");
        labels.push(("i".into(), n.to_string()));
        let bound = if bound.is_nan() { 1.0 } else { bound };
        match (typ, suffix) {
            (MetricType::Histogram | MetricType::GaugeHistogram, "_bucket") => {
                labels.push(("le".into(), float_to_go_string(bound)));
            }
            (MetricType::Summary, "") => {
                labels.push(("quantile".into(), float_to_go_string(bound)));
            }
            _ => {}
        }
        labels.sort();
        let exemplar_ok = which == Which::OpenMetrics
            && matches!(
                (typ, suffix),
                (
                    MetricType::Histogram | MetricType::GaugeHistogram,
                    "_bucket"
                ) | (MetricType::Counter, "_total")
            );
        f.samples.push(Sample {
            name: format!("{name}{suffix}"),
            labels,
            value,
            timestamp,
            exemplar: if exemplar_ok { exemplar } else { None },
        });
    }
    if which == Which::OpenMetrics && typ == MetricType::Gauge && name.len() % 2 == 0 {
        // Some gauges get a unit, which must end their name.
        f.name = format!("{name}_seconds");
        f.unit = "seconds".into();
        for s in &mut f.samples {
            s.name = f.name.clone();
        }
    }
    f
}

fn families(which: Which) -> impl Strategy<Value = Vec<MetricFamily>> {
    (0usize..5).prop_flat_map(move |n| (0..n).map(|i| family(which, i)).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn text_encode_then_parse_is_identity(fams in families(Which::Text)) {
        let format = Format::Text(Escaping::Underscores);
        let body = encode(&fams, &format);
        let parsed = parse(&body, format).map_err(|e| TestCaseError::fail(format!("{e}\n{body}")))?;
        prop_assert_eq!(parsed, fams);
    }

    #[test]
    fn openmetrics_encode_then_parse_is_identity(fams in families(Which::OpenMetrics)) {
        let format = Format::OpenMetrics(Escaping::Underscores);
        let body = encode(&fams, &format);
        let parsed = parse(&body, format).map_err(|e| TestCaseError::fail(format!("{e}\n{body}")))?;
        prop_assert_eq!(parsed, fams);
    }

    #[test]
    fn a_repeated_line_is_an_error_on_its_copy(
        fams in families(Which::OpenMetrics),
        text_fams in families(Which::Text),
        pick in any::<prop::sample::Index>(),
    ) {
        for (format, fams) in [
            (Format::OpenMetrics(Escaping::Underscores), fams),
            (Format::Text(Escaping::Underscores), text_fams),
        ] {
            let body = encode(&fams, &format);
            let Some(body) = body.strip_suffix('\n') else {
                continue;
            };
            let mut lines: Vec<&str> = body.split('\n').collect();
            if lines.is_empty() {
                continue;
            }
            // Every line is a HELP, TYPE, UNIT, sample or EOF: none may appear twice.
            let k = pick.index(lines.len());
            lines.insert(k + 1, lines[k]);
            let broken = lines.join("\n") + "\n";
            let e = parse(&broken, format).expect_err("a repeated line must be refused");
            prop_assert_eq!(e.line, k + 2, "{}\n{}", e, broken);
        }
    }

    #[test]
    fn arbitrary_text_never_panics_and_errors_name_a_line(
        input in prop_oneof![any::<String>(), "[a-z_{}=\",# \n\t0-9.+\\\\A-Z-]{0,120}"],
    ) {
        let lines = input.strip_suffix('\n').unwrap_or(&input).split('\n').count().max(1);
        for format in [Format::Text(Escaping::Underscores), Format::OpenMetrics(Escaping::Underscores)] {
            for e in validate(&input, format) {
                prop_assert!(e.line >= 1 && e.line <= lines, "{} not in 1..={}: {:?}", e.line, lines, input);
            }
        }
    }
}
