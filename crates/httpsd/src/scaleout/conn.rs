//! Connections to Redis: the shared auto-reconnecting manager for short commands, the
//! dedicated connections a worker's blocking pop needs, and URLs safe to log.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client};

/// How long a short command may take before it counts as a failure.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long opening a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A Redis URL that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for --redis-url {url}: {reason}")]
pub struct UrlError {
    /// The URL with its password hidden.
    pub url: String,
    /// Why.
    pub reason: String,
}

/// Opens a client for `url` (`redis://`, `rediss://` for TLS, `unix://`), checking it.
pub fn client(url: &str) -> Result<Client, UrlError> {
    // rustls needs a process-wide crypto provider for `rediss://`; installing it twice
    // is harmless (the second call just reports the first).
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::open(url).map_err(|e| UrlError {
        url: redact(url),
        reason: e.to_string(),
    })
}

/// The manager shared by every short command of a process.
///
/// It fails fast while Redis is down (one quick retry, bounded timeouts) so that
/// requests are answered with a 503 instead of hanging, and it reconnects by itself
/// on the next command once Redis is back.
pub fn manager(client: Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(200))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(COMMAND_TIMEOUT));
    ConnectionManager::new_lazy_with_config(client, config)
}

/// A connection of its own for a blocking pop: its response timeout is off, since the
/// 500 ms default of redis 1.x would cut every `BLMOVE` short.
pub async fn blocking(client: &Client) -> redis::RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// `url` with any password replaced by `***`, for logs and error messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{}", redact_query(tail))
}

fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let q: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", q.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("redis://localhost:6379/0"),
            "redis://localhost:6379/0"
        );
        assert_eq!(redact("redis://:s3cret@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("rediss://u:p@h"), "rediss://u:***@h");
        assert_eq!(redact("redis://tok@h/2"), "redis://***@h/2");
        assert_eq!(
            redact("redis://h/0?password=x&protocol=resp3"),
            "redis://h/0?password=***&protocol=resp3"
        );
    }

    #[test]
    fn bad_urls_are_refused_with_the_password_hidden() {
        let e = client("http://:pw@host").unwrap_err();
        assert!(!e.to_string().contains("pw@"), "{e}");
        assert!(client("rediss://localhost:6380/0").is_ok());
        assert!(client("redis://:pw@localhost:6379/0").is_ok());
    }
}
