//! The admin page at the prefix root: every target path, as relative links so that
//! it works under a URL prefix.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::http::AppState;
use crate::tree::{Selection, SubPath};

/// Renders the admin page.
pub async fn admin_handler(State(state): State<Arc<AppState>>) -> Response {
    let snapshot = state.engine.catalog().snapshot();
    let mut html = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Prometheus HTTP SD Admin</title></head>\n<body>\n<h1>Prometheus HTTP SD Admin</h1>\n<h2>Target paths</h2>\n<ul>\n",
    );
    for dir in &snapshot.listing.dirs {
        let sub = SubPath::parse(&encode_path(dir)).unwrap_or_default();
        let count = match snapshot.listing.select(&sub) {
            Selection::Generators(g) => g.len(),
            _ => 0,
        };
        html.push_str(&format!(
            "<li><a href=\"targets/{}\">/targets/{}</a> ({} generator{})</li>\n",
            escape_html(&encode_path(dir)),
            escape_html(dir),
            count,
            if count == 1 { "" } else { "s" }
        ));
    }
    let prefix_note = if state.prefix.is_empty() {
        String::new()
    } else {
        format!(
            " and <a href=\"metrics\">{}/metrics</a>",
            escape_html(&state.prefix)
        )
    };
    html.push_str(&format!(
        "</ul>\n<h2>Metrics</h2>\n<p>Metrics are available under <a href=\"/metrics\">/metrics</a>{prefix_note}.</p>\n<p>httpsd {}</p>\n</body></html>\n",
        env!("CARGO_PKG_VERSION")
    ));
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// Percent-encodes each component of a `/`-separated relative path for a URL.
pub fn encode_path(rel: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    rel.split('/')
        .map(|c| percent_encoding::utf8_percent_encode(c, SET).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
