//! Features for operators: the admin page (content, escaping, URL prefix), the debug
//! view, the metrics reference, authentication, TLS, request logs, Sentry reports,
//! the CLI's version, completions and man page, and the admin page in a real browser.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use crate::helpers::{PROMETHEUS_ACCEPT, Server, Tree, bin, get, get_with, wait_for};

/// `Command::output` with a deadline: a command that should exit at once but serves
/// instead (a regression) is killed after 20 s instead of hanging the suite.
trait BoundedOutput {
    fn bounded_output(&mut self) -> std::io::Result<std::process::Output>;
}

impl BoundedOutput for Command {
    fn bounded_output(&mut self) -> std::io::Result<std::process::Output> {
        let child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(out) => out,
            Err(_) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                panic!("command did not exit within 20 s: {self:?}");
            }
        }
    }
}

/// A hostile file name: HTML in a name must be shown as text, never run.
const HOSTILE_FILE: &str = "<img src=x onerror=alert(1)>.json";
/// A hostile directory name (quote and ampersand break naive attribute quoting).
const HOSTILE_DIR: &str = "a\"b&c'<d>";

/// A tree with good, hostile and broken generators.
fn ops_tree() -> Tree {
    let t = Tree::new();
    t.write(
        "good.json",
        r#"[{"targets":["10.0.0.1:9100"],"labels":{"job":"node"}}]"#,
    );
    t.write(HOSTILE_FILE, r#"[{"targets":["10.0.0.2:9100"]}]"#);
    t.write(
        &format!("{HOSTILE_DIR}/x.yaml"),
        "- targets: ['10.0.0.3:9100']\n",
    );
    t.write("broken/bad.json", "{not json");
    t.write("broken/fine.json", r#"[{"targets":["10.0.0.4:9100"]}]"#);
    t.write_exec("broken/fail.sh", FAILING_SCRIPT);
    t
}

/// An executable generator that fails with a traceback on stderr (the runner keeps the
/// stderr tail as the traceback, as the Python runner does with Python's).
const FAILING_SCRIPT: &str = "#!/bin/sh\n\
echo 'Traceback (most recent call last):' >&2\n\
echo '  File \"fail.sh\", line 3, in <module>' >&2\n\
echo 'RuntimeError: inventory API down' >&2\n\
exit 3\n";

/// Every `href="..."` value in `html` (entities decoded: `&amp;` and `&#38;`).
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(|h| {
            h.replace("&#38;", "&")
                .replace("&amp;", "&")
                .replace("&#34;", "\"")
        })
        .collect()
}

/// Resolves a relative `href` against the page URL.
fn resolve(page: &str, href: &str) -> String {
    reqwest::Url::parse(page)
        .and_then(|u| u.join(href))
        .unwrap_or_else(|e| panic!("cannot resolve {href:?} against {page}: {e}"))
        .to_string()
}

#[tokio::test]
async fn admin_page_shows_paths_generators_status_and_errors() {
    let t = ops_tree();
    let s = Server::serve(t.root(), &[]);
    // Run the dynamic generator once so that the board has its failure.
    assert_eq!(get(&s.url("/targets/broken?cluster=eu")).await.status, 500);
    let page = get(&s.url("/")).await;
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"), "{page:?}");
    let html = &page.body;
    assert!(html.contains("<title>Prometheus HTTP SD Admin</title>"));
    assert!(html.contains(&format!("httpsd {}", env!("CARGO_PKG_VERSION"))));
    assert!(html.contains("up "), "uptime shown");
    // Every path, with relative links to its targets and debug view.
    for (href, text) in [
        ("targets/", "/targets/<"),
        ("targets/broken", "/targets/broken<"),
        (
            "targets/a%22b%26c%27%3Cd%3E",
            "/targets/a&#34;b&#38;c&#39;&#60;d&#62;<",
        ),
    ] {
        assert!(
            html.contains(&format!("href=\"{href}\"")),
            "link {href}:\n{html}"
        );
        assert!(
            html.contains(&format!("href=\"{href}?debug=true\"")),
            "debug {href}"
        );
        assert!(html.contains(text), "text {text}:\n{html}");
    }
    // Generators with kind and status; the broken one with its error, at the top too.
    assert!(html.contains("<code>good.json</code>"));
    assert!(html.contains("<code>bad.json</code>"));
    assert!(html.contains("<td>yaml</td>"));
    assert!(html.contains("2 failing"), "{html}");
    // The failing run: its parameters, its error and the traceback, escaped.
    assert!(html.contains("<code>fail.sh</code>"), "{html}");
    assert!(html.contains("<td>executable</td>"), "{html}");
    assert!(html.contains("params <code>cluster=eu</code>"), "{html}");
    assert!(
        html.contains("line 3, in &#60;module&#62;\nRuntimeError: inventory API down"),
        "{html}"
    );
    assert!(
        html.contains("<pre>Traceback (most recent call last):"),
        "{html}"
    );
    assert!(html.contains("id=\"failing\""));
    assert!(html.contains("broken/bad.json: invalid JSON"), "{html}");
    assert!(html.contains("class=\"fail\">fail"), "{html}");
    // Hostile names are escaped: no raw tag from a file name reaches the page.
    assert!(!html.contains("<img"), "unescaped file name:\n{html}");
    assert!(!html.contains("<d>"), "unescaped dir name:\n{html}");
    assert!(
        html.contains("&#60;img src=x onerror=alert(1)&#62;.json"),
        "{html}"
    );
    // No JavaScript at all.
    assert!(!html.contains("<script"), "{html}");
    // Auto-refresh on request.
    let refreshing = get(&s.url("/?refresh=5")).await;
    assert!(
        refreshing
            .body
            .contains("<meta http-equiv=\"refresh\" content=\"5\">")
    );
    assert!(!html.contains("http-equiv=\"refresh\""));
}

#[tokio::test]
async fn admin_and_debug_views_work_under_a_url_prefix() {
    let t = ops_tree();
    let s = Server::serve(t.root(), &["-r", "/sd/v1"]);
    // P redirects to P/, the admin page; the unprefixed root is not served.
    let r = get(&s.url("/sd/v1")).await;
    assert_eq!(r.status, 308);
    assert_eq!(get(&s.url("/")).await.status, 404);
    let page_url = s.url("/sd/v1/");
    let page = get(&page_url).await;
    assert_eq!(page.status, 200);
    // Every link on the page resolves, relative to the page, to something that answers.
    let links = hrefs(&page.body);
    assert!(links.len() >= 8, "{links:?}");
    let mut debug_views = 0;
    for href in links.iter().filter(|h| !h.starts_with('#')) {
        assert!(
            !href.starts_with('/'),
            "absolute link {href} breaks behind a proxy"
        );
        let url = resolve(&page_url, href);
        let r = get(&url).await;
        if href.ends_with("debug=true") {
            debug_views += 1;
            // Debug answers 200 with a diagnosis, even for the failing path.
            assert_eq!(r.status, 200, "{url}: {r:?}");
            let v = r.json();
            assert!(v["generators"].is_array(), "{url}: {v}");
            if href.starts_with("targets/broken") {
                assert_eq!(v["status"], "fail");
                let bad = &v["generators"][0];
                assert_eq!(bad["generator"], "broken/bad.json");
                assert_eq!(bad["status"], "fail");
                assert_eq!(bad["error"]["kind"], "parse");
                assert_eq!(bad["board"]["last_run"]["status"], "fail");
                assert!(bad["board"]["failing_since"].is_number(), "{v}");
                assert!(v["generator_run_seconds"]["broken/fine.json"].is_number());
                let script = &v["generators"][1];
                assert_eq!(script["generator"], "broken/fail.sh");
                assert_eq!(script["status"], "fail");
                let tb = script["error"]["traceback"].as_str().unwrap_or_default();
                assert!(tb.contains("RuntimeError: inventory API down"), "{v}");
            }
        } else if href.starts_with("targets/broken") || href == "targets/" {
            // The root aggregates broken/, so it fails as a whole too.
            assert_eq!(r.status, 500, "{url}");
        } else if href.starts_with("targets/") {
            assert_eq!(r.status, 200, "{url}: {r:?}");
            assert!(r.body.starts_with('['), "{url}: {}", r.body);
        } else {
            assert_eq!(r.status, 200, "{url} ({href}): {r:?}");
        }
    }
    assert_eq!(debug_views, 3, "{links:?}");
    // The hostile directory is reachable through its link.
    let r = get(&resolve(&page_url, "targets/a%22b%26c%27%3Cd%3E")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("10.0.0.3:9100"));
    // The prefixed and unprefixed metrics links both work.
    assert!(links.contains(&"../../metrics".to_string()), "{links:?}");
    assert!(links.contains(&"metrics".to_string()), "{links:?}");
}

/// Parses `# TYPE name type` lines.
fn exposed_families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

/// Rows of the family table in docs/metrics.md: (family, type, exposed by).
fn documented_families() -> Vec<(String, String, String)> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md");
    let text = std::fs::read_to_string(&doc)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", doc.display()));
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_string(),
                cells[2].to_string(),
                cells[4].to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn metrics_doc_matches_exposition() {
    let t = ops_tree();
    t.write_exec("dyn/gen.sh", "#!/bin/sh\necho '[]'\n");
    t.write("dyn/gen.py", "def generate_targets(**kw):\n    return []\n");
    let s = Server::serve(t.root(), &[]);
    // Make every serve family have a sample: success, failure, unknown path, dynamic run.
    assert_eq!(get(&s.url("/targets/")).await.status, 500);
    assert_eq!(
        get(&s.url("/targets/a%22b%26c%27%3Cd%3E")).await.status,
        200
    );
    assert_eq!(get(&s.url("/targets/nope")).await.status, 404);
    get(&s.url("/targets/dyn")).await;
    let metrics = get_with(&s.url("/metrics"), &[("accept", PROMETHEUS_ACCEPT)]).await;
    assert_eq!(metrics.status, 200);
    let exposed = exposed_families(&metrics.body);
    let documented = documented_families();
    assert!(
        documented.len() >= 10,
        "doc table not parsed: {documented:?}"
    );
    for (name, ty) in &exposed {
        let doc = documented.iter().find(|(n, _, _)| n == name);
        let Some((_, doc_ty, _)) = doc else {
            panic!("/metrics exposes {name} ({ty}), which docs/metrics.md does not list");
        };
        assert_eq!(doc_ty, ty, "docs/metrics.md gives {name} the wrong type");
    }
    // Only rows for `serve` must be exposed here (`server-only`/`worker-only` rows are
    // checked by the scale-out tests).
    let serve_rows = documented
        .iter()
        .filter(|(_, _, m)| m.split(',').any(|mode| mode.trim() == "serve"));
    for (name, _, modes) in serve_rows {
        assert!(
            exposed.iter().any(|(n, _)| n == name),
            "docs/metrics.md lists {name} for serve, but /metrics does not expose it:\n{}",
            metrics.body
        );
        assert!(!modes.is_empty());
    }
}

// ---------------------------------------------------------------------------------
// Authentication

pub(crate) const USER: &str = "prometheus";
pub(crate) const PASSWORD: &str = "s3cret:with colon";
pub(crate) const TOKEN: &str = "tok-0123456789abcdef";

pub(crate) fn auth_files(dir: &Path) -> (PathBuf, PathBuf) {
    // Cost 4 keeps the test fast; production hashes use 10 or more.
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    let users = dir.join("users");
    std::fs::write(&users, format!("# comment\n{USER}:{hash}\nother:{hash}\n")).expect("write");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("{TOKEN}\nsecond-token\n")).expect("write");
    (users, tokens)
}

pub(crate) async fn status_with(url: &str, auth: Option<&str>) -> (u16, String, Vec<String>) {
    let mut req = crate::helpers::client().get(url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    let www: Vec<String> = r
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    (status, r.text().await.unwrap_or_default(), www)
}

pub(crate) fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn auth_protects_every_route_and_leaks_nothing() {
    let t = ops_tree();
    let secrets = tempfile::tempdir().expect("tempdir");
    let (users, tokens) = auth_files(secrets.path());
    let s = Server::serve(
        t.root(),
        &[
            "-r",
            "/p",
            "--basic-auth-file",
            users.to_str().unwrap(),
            "--bearer-token-file",
            tokens.to_str().unwrap(),
        ],
    );
    let routes = [
        ("/p/", 200),
        ("/p", 308),
        ("/p/targets/", 500),
        ("/p/targets/a%22b%26c%27%3Cd%3E", 200),
        ("/p/targets/broken?debug=true", 200),
        ("/p/targets/missing", 404),
        ("/p/metrics", 200),
        ("/metrics", 200),
        ("/elsewhere", 404),
    ];
    let good_basic = basic(USER, PASSWORD);
    let wrong = [
        None,
        Some(basic(USER, "wrong")),
        Some(basic("nobody", PASSWORD)),
        Some("Basic !!!not-base64".to_string()),
        Some("Bearer wrong-token".to_string()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Digest {TOKEN}")),
    ];
    let mut refusal: Option<String> = None;
    for (route, expected) in routes {
        let url = s.url(route);
        for auth in &wrong {
            let (status, body, www) = status_with(&url, auth.as_deref()).await;
            assert_eq!(status, 401, "{route} with {auth:?}");
            assert!(www.iter().any(|w| w.starts_with("Basic realm=")), "{www:?}");
            assert!(
                www.iter().any(|w| w.starts_with("Bearer realm=")),
                "{www:?}"
            );
            // Same body whatever was wrong: nothing to learn about users or paths.
            match &refusal {
                None => refusal = Some(body),
                Some(first) => assert_eq!(first, &body, "{route} with {auth:?}"),
            }
        }
        for auth in [
            good_basic.clone(),
            format!("Bearer {TOKEN}"),
            "Bearer second-token".into(),
        ] {
            let (status, _, _) = status_with(&url, Some(&auth)).await;
            assert_eq!(status, expected, "{route} with {auth}");
        }
    }
    let refusal = refusal.unwrap_or_default();
    assert_eq!(refusal.trim(), r#"{"error":"unauthorized"}"#);
    // The log tells operators about refusals without the credentials.
    let log = wait_for(Duration::from_secs(5), "401 in the request log", || {
        let log = s.log_text();
        async move { log.contains("status=401").then_some(log) }
    })
    .await;
    assert!(!log.contains(PASSWORD) && !log.contains(TOKEN), "{log}");
}

#[tokio::test]
async fn public_metrics_and_admin_can_be_opened_explicitly() {
    let t = ops_tree();
    let secrets = tempfile::tempdir().expect("tempdir");
    let (users, _) = auth_files(secrets.path());
    let s = Server::serve(
        t.root(),
        &[
            "--basic-auth-file",
            users.to_str().unwrap(),
            "--public-metrics",
        ],
    );
    assert_eq!(status_with(&s.url("/metrics"), None).await.0, 200);
    assert_eq!(status_with(&s.url("/"), None).await.0, 401);
    assert_eq!(status_with(&s.url("/targets/"), None).await.0, 401);
    drop(s);
    let s = Server::serve(
        t.root(),
        &[
            "--basic-auth-file",
            users.to_str().unwrap(),
            "--public-admin",
        ],
    );
    assert_eq!(status_with(&s.url("/"), None).await.0, 200);
    assert_eq!(status_with(&s.url("/metrics"), None).await.0, 401);
    assert_eq!(status_with(&s.url("/targets/good.json"), None).await.0, 401);
}

#[test]
fn bad_auth_and_tls_files_are_refused_at_startup() {
    let t = ops_tree();
    let d = tempfile::tempdir().expect("tempdir");
    let plain = d.path().join("plain");
    std::fs::write(&plain, "user:plaintext-password\n").expect("write");
    let empty = d.path().join("empty");
    std::fs::write(&empty, "# nothing\n").expect("write");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--basic-auth-file".into(), plain.display().to_string()],
            "not a bcrypt hash",
        ),
        (
            vec!["--bearer-token-file".into(), empty.display().to_string()],
            "no tokens",
        ),
        (
            vec!["--basic-auth-file".into(), "/nonexistent/users".into()],
            "cannot read --basic-auth-file",
        ),
        (
            vec![
                "--tls-cert".into(),
                empty.display().to_string(),
                "--tls-key".into(),
                empty.display().to_string(),
            ],
            "--tls-cert",
        ),
        (
            vec!["--tls-cert".into(), empty.display().to_string()],
            "--tls-key",
        ),
    ];
    for (args, expected) in cases {
        let out = Command::new(bin())
            .arg("serve")
            .arg(t.root())
            .args(["-p", "0"])
            .args(&args)
            .bounded_output()
            .expect("run httpsd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

// ---------------------------------------------------------------------------------
// TLS

pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    pub(crate) dir: tempfile::TempDir,
}

/// A CA and leaf certificates for 127.0.0.1, generated at test time (no committed keys).
pub(crate) fn make_pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, expired) in [("good", false), ("expired", true)] {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
            .expect("params");
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = p.signed_by(&key, &issuer).expect("sign");
        std::fs::write(dir.path().join(format!("{name}.crt")), cert.pem()).expect("write");
        std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).expect("write");
    }
    Pki {
        ca_pem: ca_cert.pem(),
        dir,
    }
}

/// GETs `path` over HTTPS with a rustls client trusting only `ca_pem`; returns the
/// status line and body, or the TLS error.
pub(crate) async fn https_get(addr: &str, path: &str, ca_pem: &str) -> Result<String, String> {
    https_get_with(addr, path, ca_pem, None).await
}

/// [`https_get`] with an optional `Authorization` header.
pub(crate) async fn https_get_with(
    addr: &str,
    path: &str,
    ca_pem: &str,
    authorization: Option<&str>,
) -> Result<String, String> {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("add root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let mut tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| format!("{e}"))?;
    let auth = authorization.map_or_else(String::new, |a| format!("Authorization: {a}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    tls.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out))
        .await
        .map_err(|_| "read timed out".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn serve_args(root: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = vec!["serve".into(), root.display().to_string()];
    v.extend(["-p".into(), "0".into()]);
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

#[tokio::test]
async fn tls_serves_https_and_refuses_wrong_or_expired_certificates() {
    let t = ops_tree();
    let pki = make_pki();
    let other = make_pki();
    let cert = |n: &str| pki.dir.path().join(n).display().to_string();
    let (good_crt, good_key) = (cert("good.crt"), cert("good.key"));
    let p = Server::start(&serve_args(
        t.root(),
        &["--tls-cert", &good_crt, "--tls-key", &good_key],
    ));
    assert!(p.log.lock().unwrap().contains("Serving on https://"));
    let path = "/targets/good.json";
    let r = https_get(&p.addr, path, &pki.ca_pem)
        .await
        .expect("https request");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("10.0.0.1:9100"), "{r}");
    // A client that trusts another CA refuses the server.
    let err = https_get(&p.addr, path, &other.ca_pem).await.unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
    // Plain HTTP to the TLS port gets no answer.
    let plain = crate::helpers::client()
        .get(format!("http://{}{path}", p.addr))
        .send()
        .await;
    assert!(plain.as_ref().is_err(), "{plain:?}");
    // The server keeps serving after those failed handshakes.
    let r = https_get(&p.addr, path, &pki.ca_pem)
        .await
        .expect("https again");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    drop(p);
    // An expired certificate is refused by the client.
    let p = Server::start(&serve_args(
        t.root(),
        &[
            "--tls-cert",
            &cert("expired.crt"),
            "--tls-key",
            &cert("expired.key"),
        ],
    ));
    let err = https_get(&p.addr, path, &pki.ca_pem).await.unwrap_err();
    assert!(err.contains("certificate expired"), "{err}");
}

// ---------------------------------------------------------------------------------
// Logs

#[tokio::test]
async fn json_request_logs_have_path_status_and_duration() {
    let t = ops_tree();
    let s = Server::serve(t.root(), &["--log-format", "json"]);
    assert_eq!(get(&s.url("/targets/good.json?secret=x")).await.status, 200);
    assert_eq!(get(&s.url("/targets/missing")).await.status, 404);
    let lines = crate::helpers::access_log_lines(&s, 2).await;
    let ok = &lines[0];
    assert_eq!(ok["path"], "/targets/good.json");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["level"], "INFO");
    assert!(ok["duration_ms"].as_f64().is_some(), "{ok}");
    assert!(ok["timestamp"].as_str().is_some(), "{ok}");
    assert_eq!(lines[1]["status"], 404);
    assert!(
        !s.log_text().contains("secret=x"),
        "query strings stay out of logs"
    );
    // Every line of the log is JSON.
    for l in s.log_text().lines() {
        assert!(serde_json::from_str::<serde_json::Value>(l).is_ok(), "{l}");
    }
}

#[tokio::test]
async fn rust_log_overrides_the_level() {
    let t = ops_tree();
    // --log-level 40 alone would hide the INFO start line; RUST_LOG wins and shows it
    // while hiding the request logs.
    let p = Server::start_with_env(
        &serve_args(t.root(), &["--log-level", "40"]),
        &[("RUST_LOG", "httpsd::serve=info,httpsd::access=off,warn")],
    );
    let url = format!("http://{}/targets/good.json", p.addr);
    assert_eq!(get(&url).await.status, 200);
    let log = p.log.lock().unwrap().clone();
    assert!(log.contains("INFO") && log.contains("Serving on"), "{log}");
    assert!(log.contains("WARN"), "warnings still shown: {log}");
    assert!(!log.contains("httpsd::access"), "{log}");
}

// ---------------------------------------------------------------------------------
// Sentry

/// A local endpoint that records what a Sentry client posts.
async fn sentry_sink() -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::{OriginalUri, State};
    let seen: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new()
        .fallback(
            |State(seen): State<Arc<Mutex<Vec<String>>>>, uri: OriginalUri, body: Bytes| async move {
                seen.lock()
                    .unwrap()
                    .push(format!("{}\n{}", uri.0, String::from_utf8_lossy(&body)));
                "{}"
            },
        )
        .with_state(seen.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://public@{addr}/42"), seen)
}

#[tokio::test]
async fn sentry_receives_generator_failures_once_with_path_and_params() {
    let (dsn, seen) = sentry_sink().await;
    let t = ops_tree();
    let s = Server::serve(t.root(), &["-s", &dsn]);
    for _ in 0..3 {
        assert_eq!(
            get(&s.url("/targets/broken?cluster=eu-1")).await.status,
            500
        );
    }
    let events = wait_for(Duration::from_secs(10), "a Sentry envelope", || {
        let seen = seen.clone();
        async move {
            let v = seen.lock().unwrap().clone();
            let events: Vec<String> = v
                .into_iter()
                .filter(|e| e.contains(r#""fingerprint":["generator-failure","broken/bad.json""#))
                .collect();
            (!events.is_empty()).then_some(events)
        }
    })
    .await;
    let e = &events[0];
    assert!(e.starts_with("/api/42/envelope/"), "{e}");
    assert!(e.contains("invalid JSON"), "{e}");
    assert!(e.contains("/targets/broken"), "{e}");
    assert!(e.contains("eu-1"), "params are reported: {e}");
    assert!(e.contains("GeneratorError.parse"), "{e}");
    // The script's failure arrives with its traceback.
    let script = wait_for(Duration::from_secs(10), "the script's event", || {
        let seen = seen.clone();
        async move {
            let v = seen.lock().unwrap().clone();
            // Match the event's own fingerprint: other events mention the script
            // in their breadcrumbs.
            v.into_iter()
                .find(|e| e.contains(r#""fingerprint":["generator-failure","broken/fail.sh""#))
        }
    })
    .await;
    assert!(
        script.contains("RuntimeError: inventory API down"),
        "{script}"
    );
    assert!(
        script.contains("Traceback (most recent call last)"),
        "{script}"
    );
    // A failure that goes on is reported once, not on every poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.contains(r#""fingerprint":["generator-failure","broken/bad.json""#))
        .count();
    assert_eq!(n, 1, "{:?}", seen.lock().unwrap());
    assert!(s.log_text().contains("sentry sdk initialized"));
}

#[test]
fn an_invalid_sentry_dsn_is_refused() {
    let t = ops_tree();
    let out = Command::new(bin())
        .arg("serve")
        .arg(t.root())
        .args(["-p", "0", "-s", "not a dsn"])
        .bounded_output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sentry-url"));
}

// ---------------------------------------------------------------------------------
// CLI packaging helpers

#[test]
fn version_completions_and_man_page() {
    let out = Command::new(bin())
        .arg("--version")
        .bounded_output()
        .expect("run");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("httpsd {}", env!("CARGO_PKG_VERSION"))
    );
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(bin())
            .args(["generate", "completions", shell])
            .bounded_output()
            .expect("run");
        assert!(out.status.success(), "{shell}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("url_prefix"), "{shell}");
        assert!(text.contains("basic-auth-file"), "{shell}");
    }
    let out = Command::new(bin())
        .args(["generate", "man"])
        .bounded_output()
        .expect("run");
    assert!(out.status.success());
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH httpsd"),
        "{man}"
    );
    // The hidden command stays out of the help.
    let help = Command::new(bin())
        .arg("--help")
        .bounded_output()
        .expect("run");
    assert!(!String::from_utf8_lossy(&help.stdout).contains("generate"));
}
