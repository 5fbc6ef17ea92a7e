//! JSON bytes exactly as the original's Flask `jsonify` writes them.
//!
//! Flask serialises with `json.dumps(obj, sort_keys=True, ensure_ascii=True,
//! separators=(",", ":"))` and appends a newline. serde_json cannot do this by itself:
//! it writes non-ASCII as raw UTF-8, leaves DEL (0x7f) unescaped, and its map order
//! depends on a cargo feature (`preserve_order`) that any crate in the build can turn on.
//! So this small writer walks a `serde_json::Value`, sorts keys itself and escapes like
//! CPython's `py_encode_basestring_ascii`.

use serde_json::Value;

/// Appends `value` to `out` as compact, key-sorted, ASCII-only JSON (no trailing newline).
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Python sorts str keys by code point, which is UTF-8 byte order.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_value(out, v);
            }
            out.push(b'}');
        }
    }
}

/// Serialises a whole response body: the value followed by `\n`, as Flask does.
pub fn to_body(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_value(&mut out, value);
    out.push(b'\n');
    out
}

fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) {
    if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
        out.extend_from_slice(python_float_repr(f).as_bytes());
    } else {
        out.extend_from_slice(n.to_string().as_bytes());
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent as `e+XX`/`e-XX`.
///
/// The digits come from `ryu`, not from Rust's `{:?}`: when two shortest strings are
/// equally close to a value that lies exactly between them (-850113040705574.25),
/// Python and ryu round the last digit half to even (`.2`), `{:?}` does not (`.3`).
/// The layout is CPython's `float_repr_style = 'short'`: exponent form when the
/// decimal point is more than 16 digits right or 4 left of the first digit.
fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let mut buf = ryu::Buffer::new();
    let r = buf.format_finite(f.abs());
    let (mantissa, exp) = match r.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (r, 0),
    };
    let int_len = mantissa.find('.').unwrap_or(mantissa.len()) as i32;
    let all: String = mantissa.chars().filter(|c| *c != '.').collect();
    let trimmed = all.trim_start_matches('0');
    // Where the decimal point sits relative to the first significant digit.
    let decpt = int_len + exp - (all.len() - trimmed.len()) as i32;
    let digits = trimmed.trim_end_matches('0');
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if digits.is_empty() {
        return format!("{sign}0.0");
    }
    let n = digits.len() as i32;
    let body = if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let e = decpt - 1;
        format!(
            "{first}{dot}e{}{:02}",
            if e < 0 { '-' } else { '+' },
            e.abs()
        )
    } else if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= n {
        format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else {
        let (a, b) = digits.split_at(decpt as usize);
        format!("{a}.{b}")
    };
    format!("{sign}{body}")
}

/// Writes a JSON string literal with CPython's ASCII escaping.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // Most strings (targets, label values) are plain printable ASCII: copy their
    // longest such prefix at once, then go character by character. The prefix ends on
    // a character boundary since every byte before it is ASCII.
    let plain = s
        .bytes()
        .position(|b| !matches!(b, b' '..=b'~') || b == b'"' || b == b'\\')
        .unwrap_or(s.len());
    out.extend_from_slice(&s.as_bytes()[..plain]);
    for ch in s[plain..].chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            ' '..='~' => out.push(ch as u8),
            _ => {
                let mut units = [0u16; 2];
                for unit in ch.encode_utf16(&mut units) {
                    push_u_escape(out, *unit);
                }
            }
        }
    }
    out.push(b'"');
}

fn push_u_escape(out: &mut Vec<u8>, unit: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[usize::from((unit >> shift) & 0xf)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enc(v: &Value) -> String {
        String::from_utf8(to_body(v)).unwrap()
    }

    #[test]
    fn matches_flask_jsonify() {
        // Expected strings produced by Python: json.dumps(v, sort_keys=True, separators=(",", ":")) + "\n"
        let v =
            json!([{"targets": ["10.0.0.1:9100"], "labels": {"b": "2", "a": "é\u{7f}\"\\\n😀"}}]);
        assert_eq!(
            enc(&v),
            "[{\"labels\":{\"a\":\"\\u00e9\\u007f\\\"\\\\\\n\\ud83d\\ude00\",\"b\":\"2\"},\"targets\":[\"10.0.0.1:9100\"]}]\n"
        );
        assert_eq!(
            enc(&json!({"z": null, "a": [true, 1, 1.5, 1e16, 1e-5]})),
            "{\"a\":[true,1,1.5,1e+16,1e-05],\"z\":null}\n"
        );
        assert_eq!(enc(&json!("\u{1}")), "\"\\u0001\"\n");
    }

    /// Found by prop_pyjson_matches_python_json_dumps: a value exactly between two
    /// shortest strings; Python's repr rounds half to even.
    #[test]
    fn float_tie_rounds_like_python() {
        // Expected strings produced by Python's repr().
        for (f, py) in [
            // -850113040705574.25, exactly (floats are 0.125 apart here).
            (-850113040705574.0 - 0.25, "-850113040705574.2"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (123.456, "123.456"),
            (0.1, "0.1"),
        ] {
            assert_eq!(python_float_repr(f), py, "{f:?}");
        }
    }
}
