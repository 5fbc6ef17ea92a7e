//! Numbers as Python writes and reads them: `floatToGoString` for sample values, `repr()`
//! for OpenMetrics timestamps, and the value spellings the parsers accept.

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
    if d.is_nan() {
        return "nan".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.into();
    }
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

/// A sample value as Prometheus's text parser and Python's `float()` read it: decimal and
/// exponent forms with an optional sign, and `Inf`/`Infinity`/`NaN` in any case.
/// Underscores, hex and surrounding blanks are refused (Prometheus refuses them too).
pub fn parse_value(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let word = body.to_ascii_lowercase();
    if matches!(word.as_str(), "inf" | "infinity" | "nan") {
        // Rust's parser accepts these spellings in any case, with a sign.
        return s.parse().ok();
    }
    // Rust's `f64::from_str` also accepts "inf"/"nan" (handled above); everything else it
    // accepts is a plain decimal with optional exponent, the grammar Go and Python share.
    if body.is_empty()
        || !body
            .bytes()
            .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b))
    {
        return None;
    }
    s.parse().ok()
}

/// `f64` equality for the model: NaN equals NaN (any payload), `-0.0` differs from `0.0`,
/// because the encoder writes them differently.
pub fn same_f64(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn values_parse_like_prometheus() {
        for (s, want) in [
            ("1", 1.0),
            ("-1.5e3", -1500.0),
            ("+Inf", f64::INFINITY),
            ("-inf", f64::NEG_INFINITY),
            ("Infinity", f64::INFINITY),
            ("1e+06", 1e6),
            (".5", 0.5),
        ] {
            assert_eq!(parse_value(s), Some(want), "{s}");
        }
        assert!(parse_value("NaN").unwrap().is_nan());
        for bad in ["", "1_000", "0x10", " 1", "abc", "1,5", "--1", "+"] {
            assert_eq!(parse_value(bad), None, "{bad}");
        }
    }
}
