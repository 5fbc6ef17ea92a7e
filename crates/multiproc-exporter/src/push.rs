//! `--push-to URL`: the merged scrape PUT to a Pushgateway on an interval and once more at
//! shutdown, under the grouping key `job` plus `--push-label`s, in the URL form Python's
//! `push_to_gateway` builds (values with `/` or a space, and empty values, base64-encoded). A failed
//! push is retried with backoff inside its interval, then counted and logged; it never
//! delays a scrape (it runs in its own task).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::watch;

use crate::outputs::{OUTPUT_FORMAT, OutputStats, Render, wait_or_stop};

/// Where to push, as what, and how often.
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// The Pushgateway's base URL (`http://host:9091`; a bare `host:port` gets `http://`).
    pub gateway: String,
    /// The `job` of the grouping key.
    pub job: String,
    /// The rest of the grouping key.
    pub labels: Vec<(String, String)>,
    /// Time between pushes.
    pub interval: Duration,
}

/// What Python's `quote_plus` leaves alone: letters, digits and `_.-~`.
const QUOTE_PLUS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// One grouping key pair as a URL path (`/name/value`), as `push_to_gateway` escapes it.
fn key_segment(name: &str, value: &str) -> String {
    if value.is_empty() {
        format!("/{name}@base64/=")
    } else if value.contains('/') || value.contains(' ') {
        // As 0.26's _escape_grouping_key: the Pushgateway would keep a `+` for a space.
        let b64 = base64::engine::general_purpose::URL_SAFE.encode(value.as_bytes());
        format!("/{name}@base64/{b64}")
    } else {
        let quoted = utf8_percent_encode(value, QUOTE_PLUS);
        format!("/{name}/{quoted}")
    }
}

impl PushSettings {
    /// The URL of the group: `{gateway}/metrics/job/{job}/{k}/{v}...`, keys sorted as
    /// Python sorts its grouping key.
    pub fn url(&self) -> String {
        let base = self.gateway.trim_end_matches('/');
        let mut url = if base.starts_with("http://") || base.starts_with("https://") {
            base.to_string()
        } else {
            format!("http://{base}")
        };
        url.push_str("/metrics");
        url.push_str(&key_segment("job", &self.job));
        let mut labels = self.labels.clone();
        labels.sort();
        for (k, v) in &labels {
            url.push_str(&key_segment(k, v));
        }
        url
    }
}

/// Tries per push, and the first wait between tries (doubled after each).
const TRIES: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

async fn push_once(client: &reqwest::Client, url: &str, body: String) -> Result<(), String> {
    let resp = client
        .put(url)
        .header(reqwest::header::CONTENT_TYPE, exposition::CONTENT_TYPE_TEXT)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("PUT {url}: {e}"))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    Err(format!("PUT {url}: {status}: {}", text.trim()))
}

/// One push with its retries (the body is rendered once).
async fn push_with_retries(
    client: &reqwest::Client,
    url: &str,
    render: &Render,
    max_wait: Duration,
) -> Result<(), String> {
    let body = render(OUTPUT_FORMAT).await?;
    let mut backoff = FIRST_BACKOFF.min(max_wait);
    let mut last = String::new();
    for attempt in 1..=TRIES {
        match push_once(client, url, body.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::debug!(attempt, "push failed: {e}");
                last = e;
            }
        }
        if attempt < TRIES {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(max_wait);
        }
    }
    Err(last)
}

/// Pushes now and on every interval; once more when `stop` turns true.
pub async fn run(
    settings: PushSettings,
    render: Render,
    stats: Arc<OutputStats>,
    mut stop: watch::Receiver<bool>,
) {
    let url = settings.url();
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot build the Pushgateway client: {e}");
            return;
        }
    };
    tracing::info!(%url, interval = settings.interval.as_secs_f64(), "pushing to the Pushgateway");
    let mut last_error: Option<String> = None;
    let mut stopping = false;
    loop {
        let res = push_with_retries(&client, &url, &render, settings.interval / 4).await;
        stats.push.record(res.is_ok());
        match res {
            Ok(()) => {
                if last_error.take().is_some() {
                    tracing::info!(%url, "push succeeded again");
                }
            }
            Err(e) => {
                if last_error.as_deref() != Some(e.as_str()) {
                    tracing::error!("push to the Pushgateway failed: {e}");
                }
                last_error = Some(e);
            }
        }
        if stopping {
            break;
        }
        // Stop asked (SIGTERM): one last push with the final values.
        stopping = wait_or_stop(settings.interval, &mut stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_escapes_like_push_to_gateway() {
        let s = PushSettings {
            gateway: "localhost:9091/".into(),
            job: "my job".into(),
            labels: vec![
                ("zone".into(), "a/b".into()),
                ("empty".into(), String::new()),
                ("instance".into(), "w-1.x~:".into()),
            ],
            interval: Duration::from_secs(1),
        };
        assert_eq!(
            s.url(),
            "http://localhost:9091/metrics/job@base64/bXkgam9i/empty@base64/=/instance/w-1.x~%3A/zone@base64/YS9i"
        );
    }
}
