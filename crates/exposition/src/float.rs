//! Numbers as Python writes and reads them: `floatToGoString` for sample values, `repr()`
//! for OpenMetrics timestamps, and the value spellings the parsers accept.

use std::fmt::Write as _;

/// Python's `floatToGoString`: `repr()` digits, Go-style `e+06` for positives >= 1e6.
pub fn float_to_go_string(d: f64) -> String {
    let mut out = String::with_capacity(24);
    push_float_go(&mut out, d);
    out
}

/// [`float_to_go_string`] appended to `out`: the encoders write every sample value through
/// this, so the usual values take no allocation.
pub fn push_float_go(out: &mut String, d: f64) {
    // Integers below 1e6 in magnitude: `repr` is the integer and `.0` (Python keeps the
    // sign of -0.0), and floatToGoString leaves them alone.
    if d.fract() == 0.0 && d.abs() < 1e6 {
        if d == 0.0 && d.is_sign_negative() {
            out.push('-');
        }
        let _ = write!(out, "{}.0", d as i64);
        return;
    }
    if d == f64::INFINITY {
        return out.push_str("+Inf");
    }
    if d == f64::NEG_INFINITY {
        return out.push_str("-Inf");
    }
    if d.is_nan() {
        return out.push_str("NaN");
    }
    // `ryu` writes 1e-5 <= |d| < 1e16 in fixed notation, with Python's digits and `.0`
    // for integers; Python does too from 1e-4 on, and floatToGoString only rewrites
    // positives from 1e6 on: in between, `ryu`'s text is the answer.
    if (1e-4..1e6).contains(&d.abs()) {
        let mut ryu = ryu::Buffer::new();
        return out.push_str(ryu.format_finite(d));
    }
    let digits = Digits::of(d);
    // repr's fixed notation with more than 6 integer digits: Go's `d.dddde+XX` instead.
    if d > 0.0 && (6..16).contains(&digits.exp) {
        digits.push_scientific(out, false);
    } else {
        digits.push_repr(out);
    }
}

/// Python's `repr(float)` for finite values: the shortest round-trip digits, in fixed
/// notation for exponents -4..16 and `d.ddde+XX` otherwise.
pub fn python_repr(d: f64) -> String {
    if d.is_nan() {
        return "nan".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "inf" } else { "-inf" }.into();
    }
    let mut out = String::with_capacity(24);
    Digits::of(d).push_repr(&mut out);
    out
}

/// A finite float as its shortest round-trip decimal digits: `0.d1d2... x 10^(exp+1)`,
/// i.e. `d1.d2... x 10^exp`. Written by hand on top of `ryu`'s digits because no crate
/// writes Python's `repr` spelling, and `format!("{:?}")` is several times slower.
struct Digits {
    negative: bool,
    /// The significant digits, no leading or trailing zeros (`"0"` for zero).
    buf: [u8; 24],
    len: usize,
    /// Decimal exponent of the first digit.
    exp: i32,
}

impl Digits {
    fn of(d: f64) -> Digits {
        let mut ryu = ryu::Buffer::new();
        let s = ryu.format_finite(d).as_bytes();
        let (negative, s) = match s.first() {
            Some(b'-') => (true, &s[1..]),
            _ => (false, s),
        };
        let (mant, e10) = match s.iter().position(|&b| b == b'e') {
            Some(i) => {
                let e = std::str::from_utf8(&s[i + 1..])
                    .ok()
                    .and_then(|e| e.parse::<i32>().ok())
                    .unwrap_or(0);
                (&s[..i], e)
            }
            None => (s, 0),
        };
        let mut out = Digits {
            negative,
            buf: [0; 24],
            len: 0,
            exp: 0,
        };
        // Position of the decimal point within the mantissa's digits.
        let mut point = mant.iter().position(|&b| b == b'.').unwrap_or(mant.len()) as i32;
        let mut leading = true;
        for &b in mant.iter().filter(|b| b.is_ascii_digit()) {
            if leading && b == b'0' {
                point -= 1;
                continue;
            }
            leading = false;
            if out.len < out.buf.len() {
                out.buf[out.len] = b;
                out.len += 1;
            }
        }
        while out.len > 1 && out.buf[out.len - 1] == b'0' {
            out.len -= 1;
        }
        if out.len == 0 {
            out.buf[0] = b'0';
            out.len = 1;
            out.exp = 0;
        } else {
            out.exp = point + e10 - 1;
        }
        out
    }

    fn digits(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("0")
    }

    /// `repr`: fixed notation for exponents -4..16, else scientific.
    fn push_repr(&self, out: &mut String) {
        if !(-4..16).contains(&self.exp) {
            return self.push_scientific(out, true);
        }
        if self.negative {
            out.push('-');
        }
        let digits = self.digits();
        let int_len = self.exp + 1;
        if int_len <= 0 {
            out.push_str("0.");
            (0..-int_len).for_each(|_| out.push('0'));
            out.push_str(digits);
        } else if int_len as usize >= digits.len() {
            out.push_str(digits);
            (digits.len()..int_len as usize).for_each(|_| out.push('0'));
            out.push_str(".0");
        } else {
            let (i, f) = digits.split_at(int_len as usize);
            out.push_str(i);
            out.push('.');
            out.push_str(f);
        }
    }

    /// `d.ddde+XX`: Python's spelling (`python`: `e-05`/`e+16`) or Go's (always `e+`,
    /// used for positives only).
    fn push_scientific(&self, out: &mut String, python: bool) {
        if self.negative {
            out.push('-');
        }
        let digits = self.digits();
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if self.exp < 0 { '-' } else { '+' };
        let _ = match python {
            true => write!(out, "e{sign}{:02}", self.exp.unsigned_abs()),
            false => write!(out, "e+{:02}", self.exp),
        };
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
            (999999.0, "999999.0"),
            (-999999.0, "-999999.0"),
            (1000000.0, "1e+06"),
            (-1000000.0, "-1000000.0"),
            (1234567.0, "1.234567e+06"),
            (42.0, "42.0"),
            (-3.0, "-3.0"),
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
