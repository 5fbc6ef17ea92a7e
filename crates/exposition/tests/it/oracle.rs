//! The real prometheus_client 0.26.0 as the oracle: its encoders' output parses and
//! re-encodes byte for byte, and its parsers read what we encode.

use std::path::Path;
use std::process::Command;

use exposition::{Escaping, Format, MetricFamily, encode, float_to_go_string, parse, python_repr};

use crate::common;

const ORACLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/py/oracle.py");

/// Runs the oracle script; a missing python3 or prometheus_client fails the test.
fn oracle(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(ORACLE)
        .args(args)
        .output()
        .expect("python3 must be installed (with prometheus_client 0.26.0)");
    assert!(
        out.status.success(),
        "oracle.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The sample of `f` whose label `i` is `i`.
fn sample_i<'a>(f: &'a MetricFamily, i: &str) -> &'a exposition::Sample {
    f.samples.iter().find(|s| s.label("i") == Some(i)).unwrap()
}

fn emitted(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).expect("oracle output")
}

#[test]
fn python_output_parses_and_reencodes_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    oracle(&["emit", dir.path().to_str().unwrap()]);
    for (file, format) in [
        ("text.txt", Format::Text(Escaping::Underscores)),
        ("om.txt", Format::OpenMetrics(Escaping::Underscores)),
        ("text_utf8.txt", Format::Text(Escaping::AllowUtf8)),
        ("om_utf8.txt", Format::OpenMetrics(Escaping::AllowUtf8)),
    ] {
        let python = emitted(dir.path(), file);
        let fams = parse(&python, format).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(fams.len() >= 10, "{file}: {} families", fams.len());
        let ours = encode(&fams, &format);
        assert_eq!(ours, python, "{file} re-encoded differs");
    }
}

#[test]
fn python_output_has_what_python_put_in() {
    let dir = tempfile::tempdir().unwrap();
    oracle(&["emit", dir.path().to_str().unwrap()]);
    let om = parse(
        &emitted(dir.path(), "om.txt"),
        Format::OpenMetrics(Escaping::Underscores),
    )
    .unwrap();
    let by = |n: &str| om.iter().find(|f| f.name == n).unwrap().clone();
    let c = by("requests");
    assert_eq!(
        c.help,
        "help with a backslash \\ a newline \n a \"quote\" and ü"
    );
    assert_eq!(c.typ, exposition::MetricType::Counter);
    let odd = c
        .samples
        .iter()
        .find(|s| s.label("odd") == Some("x"))
        .unwrap();
    assert_eq!(
        odd.label("path"),
        Some("back\\slash new\nline \"quoted\" ü ☃")
    );
    let g = by("temperature_celsius");
    assert_eq!(g.unit, "celsius");
    let ts = sample_i(&g, "ts");
    assert_eq!(
        ts.timestamp,
        Some(exposition::Timestamp::Seconds(1700000000.123))
    );
    let neg = sample_i(&g, "3");
    assert!(neg.value == 0.0 && neg.value.is_sign_negative());
    let ex = by("with_exemplar").samples[0].exemplar.clone().unwrap();
    assert_eq!(ex.labels, vec![("trace_id".into(), "abc".into())]);
    assert_eq!(
        ex.timestamp,
        Some(exposition::Timestamp::Seconds(1700000000.5))
    );

    let text = parse(
        &emitted(dir.path(), "text.txt"),
        Format::Text(Escaping::Underscores),
    )
    .unwrap();
    let g = text
        .iter()
        .find(|f| f.name == "temperature_celsius")
        .unwrap()
        .clone();
    let ts = sample_i(&g, "ts");
    assert_eq!(
        ts.timestamp,
        Some(exposition::Timestamp::Millis(1700000000123))
    );
}

/// What Python's parser saw: `[{name, type, help, unit, samples: [[name, labels, repr]]}]`.
fn python_parse(format: &str, text: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.txt");
    std::fs::write(&path, text).unwrap();
    serde_json::from_str(&oracle(&["parse", format, path.to_str().unwrap()])).unwrap()
}

/// Our model in the oracle's JSON shape.
fn as_json(fams: &[MetricFamily]) -> serde_json::Value {
    let fams: Vec<serde_json::Value> = fams
        .iter()
        .map(|f| {
            let samples: Vec<serde_json::Value> = f
                .samples
                .iter()
                .map(|s| {
                    let mut labels = s.labels.clone();
                    labels.sort();
                    serde_json::json!([s.name, labels, python_repr(s.value)])
                })
                .collect();
            serde_json::json!({
                "name": f.name, "type": f.typ.as_str(), "help": f.help, "unit": f.unit,
                "samples": samples,
            })
        })
        .collect();
    serde_json::Value::Array(fams)
}

#[test]
fn python_parsers_read_what_we_encode() {
    let all = common::odd_families();
    let om = Format::OpenMetrics(Escaping::Underscores);
    let seen = python_parse("om", &encode(&all, &om));
    assert_eq!(seen, as_json(&all), "Python's OpenMetrics parser disagrees");
    // Parsed back, it encodes to the same bytes (a millisecond timestamp comes back as
    // float seconds, which OpenMetrics writes the same way).
    let body = encode(&all, &om);
    assert_eq!(encode(&parse(&body, om).unwrap(), &om), body);

    // The text format carries the types it has, without _created.
    let text_fams: Vec<MetricFamily> = common::text_expressible(&all);
    assert!(text_fams.len() >= 5);
    let text = Format::Text(Escaping::Underscores);
    let mut want = text_fams.clone();
    for f in &mut want {
        for s in &mut f.samples {
            // Python's text parser keeps no exemplars, and reads timestamps as floats.
            s.exemplar = None;
        }
    }
    let seen = python_parse("text", &encode(&text_fams, &text));
    assert_eq!(seen, as_json(&want), "Python's text parser disagrees");
}

/// Every sample value and OpenMetrics timestamp is spelled as Python spells it: `repr`
/// and `floatToGoString` of random bit patterns (every exponent), of decimals as
/// applications produce them, and of exact halfway cases (Python rounds half to even).
#[test]
fn floats_are_spelled_as_python_spells_them() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut values = vec![
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        5e-324,
        1e16,
        1e15,
        0.1,
        1e-4,
        1e-5,
        1e6,
        999_999.5,
        f64::from_bits(0x4317_9085_685d_83c9), // 1658206780088562.25: a tie
    ];
    for _ in 0..20_000 {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        values.push(f64::from_bits(x));
        values.push((x % 100_000_000) as f64 / 1000.0);
        values.push((x % 1_000_000_000_000) as f64 * 10f64.powi((x % 40) as i32 - 20));
        // Halves above 2^50: exactly halfway between two 16-digit decimals.
        values.push(((1u64 << 50) + (x % (1 << 20))) as f64 + 0.25);
    }
    let values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    let input: String = values
        .iter()
        .map(|v| format!("{:x}\n", v.to_bits()))
        .collect();
    let mut child = Command::new("python3")
        .arg(ORACLE)
        .arg("floats")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 must be installed (with prometheus_client 0.26.0)");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(input.as_bytes()).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "oracle.py floats failed");
    let out = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), values.len());
    for (v, line) in values.iter().zip(lines) {
        let (repr, go) = line.split_once(' ').unwrap();
        assert_eq!(python_repr(*v), repr, "repr of {v:?} ({:x})", v.to_bits());
        assert_eq!(float_to_go_string(*v), go, "floatToGoString of {v:?}");
    }
}
