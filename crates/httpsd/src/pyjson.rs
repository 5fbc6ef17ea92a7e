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
    let s = format!("{f:?}");
    match s.find('e') {
        Some(pos) => {
            let (mantissa, exp) = s.split_at(pos);
            let exp = &exp[1..];
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
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
}
