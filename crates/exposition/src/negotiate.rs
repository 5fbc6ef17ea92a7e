//! Content negotiation as Python's `choose_encoder` and `gzip_accepted` do it: text 0.0.4
//! unless the scraper asks for OpenMetrics (or text 1.0.0 with an escaping), gzip when
//! accepted; and recognising a gzip body.

use crate::names::Escaping;

/// Which encoder a scrape gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `text/plain; version=0.0.4` (also `version=1.0.0` with an escaping).
    Text(Escaping),
    /// OpenMetrics text.
    OpenMetrics(Escaping),
}

/// Content type of the 0.0.4 text format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics 1.0.0.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn get_param<'a>(toks: &[&'a str], name: &str) -> Option<&'a str> {
    toks.iter()
        .filter_map(|tok| tok.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn get_escaping(toks: &[&str]) -> Escaping {
    match get_param(toks, "escaping") {
        Some("allow-utf-8") => Escaping::AllowUtf8,
        Some("dots") => Escaping::Dots,
        Some("values") => Escaping::Values,
        _ => Escaping::Underscores,
    }
}

fn version_at_least_1(v: &str) -> bool {
    let mut parts = Vec::new();
    for p in v.split('.') {
        match p.trim().parse::<i64>() {
            Ok(n) => parts.push(n),
            // Python would compare str with int here and fail; we decline the format.
            Err(_) => return false,
        }
    }
    parts.as_slice() >= [1i64, 0, 0].as_slice()
}

/// Python's `choose_encoder`: the format and the Content-Type for an Accept header.
pub fn choose_format(accept: &str) -> (Format, String) {
    for accepted in accept.split(',') {
        let toks: Vec<&str> = accepted.split(';').collect();
        let mime = toks[0].trim();
        if mime == "application/openmetrics-text" {
            let version = get_param(&toks, "version").unwrap_or("");
            let escaping = get_escaping(&toks);
            if version.is_empty() {
                return (
                    Format::OpenMetrics(Escaping::Underscores),
                    CONTENT_TYPE_OPENMETRICS.into(),
                );
            }
            if version_at_least_1(version) {
                return (
                    Format::OpenMetrics(escaping),
                    format!(
                        "application/openmetrics-text; version={version}; charset=utf-8; escaping={}",
                        escaping.as_str()
                    ),
                );
            }
        } else if mime == "text/plain" {
            let version = get_param(&toks, "version").unwrap_or("");
            let escaping = get_escaping(&toks);
            if !version.is_empty() && version_at_least_1(version) {
                return (
                    Format::Text(escaping),
                    format!(
                        "text/plain; version=1.0.0; charset=utf-8; escaping={}",
                        escaping.as_str()
                    ),
                );
            }
        }
    }
    (
        Format::Text(Escaping::Underscores),
        CONTENT_TYPE_TEXT.into(),
    )
}

/// Python's `gzip_accepted`.
pub fn gzip_accepted(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|a| {
        a.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("gzip")
    })
}

/// What one scrape asked for: the format, the Content-Type to answer with, and whether
/// the body is gzipped. Built once from the request's headers, so every server that
/// serves exposition text negotiates the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The encoder to use.
    pub format: Format,
    /// The `Content-Type` header value of the answer.
    pub content_type: String,
    /// Whether the answer is gzipped (`Content-Encoding: gzip`).
    pub gzip: bool,
}

impl Negotiated {
    /// From the request's `Accept` and `Accept-Encoding` values (`""` when absent).
    pub fn from_headers(accept: &str, accept_encoding: &str) -> Negotiated {
        let (format, content_type) = choose_format(accept);
        Negotiated {
            format,
            content_type,
            gzip: gzip_accepted(accept_encoding),
        }
    }

    /// The body to send: `text` itself, or gzipped when the scraper accepts it.
    pub fn body(&self, text: String) -> std::io::Result<Vec<u8>> {
        if self.gzip {
            gzip(text.as_bytes())
        } else {
            Ok(text.into_bytes())
        }
    }
}

/// Gzips a body at the fast level: scrapes are frequent and bodies compress well either way.
pub fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(body)?;
    enc.finish()
}

/// Whether `body` starts with the gzip magic bytes (RFC 1952): an exporter's output or a
/// fetched body that must be inflated before it is parsed.
pub fn is_gzip(body: &[u8]) -> bool {
    body.starts_with(&[0x1f, 0x8b])
}

/// The exposition format of a response's `Content-Type`: OpenMetrics for
/// `application/openmetrics-text`, text otherwise (what Prometheus falls back to).
pub fn format_of_content_type(content_type: &str) -> Format {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/openmetrics-text") {
        Format::OpenMetrics(Escaping::Underscores)
    } else {
        Format::Text(Escaping::Underscores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation_follows_choose_encoder() {
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let (f, ct) = choose_format(prom);
        assert_eq!(f, Format::OpenMetrics(Escaping::Underscores));
        assert_eq!(
            ct,
            "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
        );
        assert_eq!(
            choose_format("application/openmetrics-text").1,
            CONTENT_TYPE_OPENMETRICS
        );
        assert_eq!(choose_format("").1, CONTENT_TYPE_TEXT);
        assert_eq!(
            choose_format("application/openmetrics-text;version=0.0.1").1,
            CONTENT_TYPE_TEXT
        );
        assert_eq!(
            choose_format("text/plain;version=1.0.0;escaping=allow-utf-8").0,
            Format::Text(Escaping::AllowUtf8)
        );
        assert!(gzip_accepted("br, gzip;q=1"));
        assert!(!gzip_accepted("identity"));
        let n = Negotiated::from_headers("text/plain", "gzip");
        assert_eq!(n.content_type, CONTENT_TYPE_TEXT);
        let body = n.body("a 1.0\n".into()).unwrap();
        assert!(is_gzip(&body));
        let mut plain = String::new();
        use std::io::Read as _;
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut plain)
            .unwrap();
        assert_eq!(plain, "a 1.0\n");
    }

    #[test]
    fn gzip_and_content_type_detection() {
        assert!(is_gzip(&[0x1f, 0x8b, 8, 0]));
        assert!(!is_gzip(b"# HELP"));
        assert_eq!(
            format_of_content_type(CONTENT_TYPE_OPENMETRICS),
            Format::OpenMetrics(Escaping::Underscores)
        );
        assert_eq!(
            format_of_content_type("text/plain"),
            Format::Text(Escaping::Underscores)
        );
    }
}
