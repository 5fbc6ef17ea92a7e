//! TLS and authentication of the HTTP endpoints, matching what Prometheus's
//! `http_sd_configs` can send: HTTPS (rustls), HTTP basic auth checked against bcrypt
//! hashes (the `htpasswd -B` file format) and bearer tokens from a file.
//!
//! When any authentication is configured, every route requires it, including
//! `/metrics` and the admin page, unless `--public-metrics`/`--public-admin` open
//! them. A refused request gets the same 401 whatever was wrong (missing header,
//! unknown user, wrong password, wrong token), so nothing is learnt from it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use subtle::ConstantTimeEq;

/// Why the security options cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A file could not be read.
    #[error("cannot read {option} file {path:?}: {source}")]
    Read {
        /// The option naming the file.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file's content is unusable.
    #[error("invalid {option} file {path:?}: {reason}")]
    Invalid {
        /// The option naming the file.
        option: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Validated TLS and authentication settings.
#[derive(Clone, Default)]
pub struct SecuritySettings {
    /// The TLS configuration, when HTTPS is on.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The access policy applied to every request.
    pub policy: Arc<AccessPolicy>,
}

impl std::fmt::Debug for SecuritySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecuritySettings")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.policy.auth.is_some())
            .finish()
    }
}

impl SecuritySettings {
    /// Loads the certificate and key (`tls`), the user and token files, and sets
    /// which routes stay open.
    pub fn load(
        tls: Option<(&Path, &Path)>,
        basic_auth_file: Option<&Path>,
        bearer_token_file: Option<&Path>,
        public_metrics: bool,
        public_admin: bool,
    ) -> Result<SecuritySettings, SecurityError> {
        let tls = match tls {
            Some((cert, key)) => Some(Arc::new(load_tls(cert, key)?)),
            None => None,
        };
        let users = basic_auth_file.map(load_users).transpose()?;
        let tokens = bearer_token_file.map(load_tokens).transpose()?;
        let auth = if users.is_some() || tokens.is_some() {
            Some(Arc::new(Auth::new(users, tokens)))
        } else {
            None
        };
        Ok(SecuritySettings {
            tls,
            policy: Arc::new(AccessPolicy {
                auth,
                public_metrics,
                public_admin,
                prefix: String::new(),
            }),
        })
    }

    /// `https` with TLS, else `http` (for the "Serving on" line).
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Sets the URL prefix the policy uses to recognise the admin and metrics routes.
    pub fn with_prefix(mut self, prefix: &str) -> SecuritySettings {
        let mut policy = (*self.policy).clone();
        policy.prefix = prefix.to_string();
        self.policy = Arc::new(policy);
        self
    }
}

/// Reads a PEM certificate chain and private key into a rustls server configuration.
pub fn load_tls(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, SecurityError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let read = |option: &'static str, path: &Path| {
        std::fs::read(path).map_err(|source| SecurityError::Read {
            option,
            path: path.to_path_buf(),
            source,
        })
    };
    let invalid = |option: &'static str, path: &Path, reason: String| SecurityError::Invalid {
        option,
        path: path.to_path_buf(),
        reason,
    };
    let cert_pem = read("--tls-cert", cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("--tls-cert", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid("--tls-cert", cert, "no CERTIFICATE in it".into()));
    }
    let key_pem = read("--tls-key", key)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| invalid("--tls-key", key, format!("no usable private key ({e})")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("--tls-cert", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| invalid("--tls-key", key, e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn load_users(path: &Path) -> Result<HashMap<String, String>, SecurityError> {
    let option = "--basic-auth-file";
    let text = std::fs::read_to_string(path).map_err(|source| SecurityError::Read {
        option,
        path: path.to_path_buf(),
        source,
    })?;
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let invalid = |reason: String| SecurityError::Invalid {
            option,
            path: path.to_path_buf(),
            reason: format!("line {}: {reason}", n + 1),
        };
        let Some((user, hash)) = line.split_once(':') else {
            return Err(invalid("expected user:bcrypt-hash".into()));
        };
        if user.is_empty() {
            return Err(invalid("empty user name".into()));
        }
        if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"))
            || hash.len() != 60
        {
            return Err(invalid(format!(
                "the password of {user:?} is not a bcrypt hash (create one with `htpasswd -nB {user}`)"
            )));
        }
        users.insert(user.to_string(), hash.to_string());
    }
    if users.is_empty() {
        return Err(SecurityError::Invalid {
            option,
            path: path.to_path_buf(),
            reason: "no users in it".into(),
        });
    }
    Ok(users)
}

fn load_tokens(path: &Path) -> Result<Vec<Vec<u8>>, SecurityError> {
    let option = "--bearer-token-file";
    let text = std::fs::read_to_string(path).map_err(|source| SecurityError::Read {
        option,
        path: path.to_path_buf(),
        source,
    })?;
    let tokens: Vec<Vec<u8>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.as_bytes().to_vec())
        .collect();
    if tokens.is_empty() {
        return Err(SecurityError::Invalid {
            option,
            path: path.to_path_buf(),
            reason: "no tokens in it".into(),
        });
    }
    Ok(tokens)
}

/// Checks credentials: bcrypt users and bearer tokens.
pub struct Auth {
    users: Option<HashMap<String, String>>,
    tokens: Option<Vec<Vec<u8>>>,
    /// A hash checked when the user is unknown, so that timing does not tell users apart.
    dummy_hash: Option<String>,
    /// Authorization headers already verified: bcrypt is slow on purpose, and
    /// Prometheus sends the same header on every poll.
    verified: Mutex<HashSet<String>>,
}

const MAX_VERIFIED: usize = 1024;

impl Auth {
    fn new(users: Option<HashMap<String, String>>, tokens: Option<Vec<Vec<u8>>>) -> Auth {
        // Same cost as the configured hashes, so an unknown user costs as much as a known one.
        let dummy_hash = users.as_ref().and_then(|u| {
            let cost = u.values().next()?.get(4..6)?.parse::<u32>().ok()?;
            bcrypt::hash("not a password", cost).ok()
        });
        Auth {
            users,
            tokens,
            dummy_hash,
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// True when `authorization` carries valid credentials.
    pub async fn check(self: &Arc<Self>, authorization: Option<&HeaderValue>) -> bool {
        let Some(value) = authorization.and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            let Some(tokens) = &self.tokens else {
                return false;
            };
            // Compare with every token, without stopping early.
            let mut ok = subtle::Choice::from(0);
            for t in tokens {
                ok |= t.as_slice().ct_eq(rest.as_bytes());
            }
            return bool::from(ok);
        }
        if !scheme.eq_ignore_ascii_case("basic") || self.users.is_none() {
            return false;
        }
        if self.is_verified(value) {
            return true;
        }
        let Some((user, password)) = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            })
        else {
            return false;
        };
        let this = self.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let users = this.users.as_ref()?;
            match users.get(&user) {
                Some(hash) => bcrypt::verify(&password, hash).ok(),
                None => {
                    if let Some(d) = &this.dummy_hash {
                        let _ = bcrypt::verify(&password, d);
                    }
                    Some(false)
                }
            }
        })
        .await
        .ok()
        .flatten()
        .unwrap_or(false);
        if ok {
            let mut v = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if v.len() >= MAX_VERIFIED {
                v.clear();
            }
            v.insert(value.to_string());
        }
        ok
    }

    fn is_verified(&self, value: &str) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(value)
    }
}

/// Which routes need credentials.
#[derive(Clone, Default)]
pub struct AccessPolicy {
    /// The credentials checker; `None` means no authentication.
    pub auth: Option<Arc<Auth>>,
    /// `/metrics` is open.
    pub public_metrics: bool,
    /// The admin page is open.
    pub public_admin: bool,
    /// The URL prefix.
    pub prefix: String,
}

impl AccessPolicy {
    /// True when authentication is configured.
    pub fn enabled(&self) -> bool {
        self.auth.is_some()
    }

    fn is_public(&self, path: &str) -> bool {
        let p = &self.prefix;
        let metrics = path == "/metrics"
            || path.starts_with("/metrics/")
            || (!p.is_empty() && path == format!("{p}/metrics"));
        let admin = path == format!("{p}/") || (!p.is_empty() && path == p);
        (metrics && self.public_metrics) || (admin && self.public_admin)
    }
}

/// Axum middleware: refuses requests without valid credentials with a bare 401.
pub async fn require_auth(
    State(policy): State<Arc<AccessPolicy>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(auth) = &policy.auth else {
        return next.run(req).await;
    };
    if policy.is_public(req.uri().path())
        || auth.check(req.headers().get(header::AUTHORIZATION)).await
    {
        return next.run(req).await;
    }
    unauthorized(auth)
}

fn unauthorized(auth: &Auth) -> Response {
    let mut resp = crate::error::json_response(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({"error": "unauthorized"}),
    );
    let h = resp.headers_mut();
    if auth.users.is_some() {
        h.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"httpsd\", charset=\"UTF-8\""),
        );
    }
    if auth.tokens.is_some() {
        h.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"httpsd\""),
        );
    }
    resp
}
