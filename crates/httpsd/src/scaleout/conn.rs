//! Connections to Redis: the shared auto-reconnecting manager for short commands, the
//! dedicated connections a worker's blocking pop needs, and URLs safe to log.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client};

use crate::settings::SettingsError;

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

/// Where Redis is and how to reach it: the URL plus optional TLS files, read once.
#[derive(Clone)]
pub struct RedisTarget {
    /// The URL as given (may hold a password: log [`RedisTarget::redacted`] instead).
    url: String,
    /// PEM bytes of a CA to trust instead of the system roots.
    ca_cert: Option<Vec<u8>>,
    /// PEM bytes of a client certificate and key (mutual TLS).
    client_tls: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url", &redact(&self.url))
            .field("ca_cert", &self.ca_cert.is_some())
            .field("client_tls", &self.client_tls.is_some())
            .finish()
    }
}

impl RedisTarget {
    /// Checks a Redis URL and its TLS files (PEM bytes): the URL parses, and TLS
    /// files come only with `rediss://`.
    pub fn new(
        url: String,
        ca_cert: Option<Vec<u8>>,
        client_tls: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Result<RedisTarget, SettingsError> {
        if (ca_cert.is_some() || client_tls.is_some()) && !url.starts_with("rediss://") {
            return Err(SettingsError::Option {
                option: "--redis-ca-cert",
                reason: "TLS files need a rediss:// URL".into(),
            });
        }
        let target = RedisTarget {
            url,
            ca_cert,
            client_tls,
        };
        target.client().map_err(|e| SettingsError::Option {
            option: "--redis-url",
            reason: format!("{}: {}", e.url, e.reason),
        })?;
        Ok(target)
    }

    /// The URL with its password hidden.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }

    /// A client for this target.
    pub fn client(&self) -> Result<Client, UrlError> {
        if self.ca_cert.is_none() && self.client_tls.is_none() {
            return client(&self.url);
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        Client::build_with_tls(
            self.url.as_str(),
            redis::TlsCertificates {
                client_tls: self
                    .client_tls
                    .as_ref()
                    .map(|(cert, key)| redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                root_cert: self.ca_cert.clone(),
            },
        )
        .map_err(|e| UrlError {
            url: redact(&self.url),
            reason: e.to_string(),
        })
    }
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
