//! `server-only` and `worker-only` take the same listener options as `serve`: TLS,
//! basic and bearer auth, `--public-metrics`, and the request log. Each is proved on
//! `server-only` with a real `redis-server` and a real worker; the worker's metrics
//! server is protected the same way.

use crate::helpers::{Tree, access_log_lines};
use crate::ops::{
    PASSWORD, TOKEN, USER, auth_files, basic, https_get, https_get_with, make_pki, status_with,
};
use crate::scaleout::{RedisServer, server_only, worker};

const BODY: &str = r#"[{"targets":["10.0.0.7:9100"],"labels":{"job":"node"}}]"#;

/// A tree with one static file and one executable (so a worker must run it).
fn tree() -> Tree {
    let t = Tree::new();
    t.write("static/s.json", BODY);
    t.write_exec(
        "dyn/gen",
        "#!/bin/sh\nprintf '[{\"targets\":[\"10.0.0.8:9100\"]}]'\n",
    );
    t
}

/// A CA with a certificate for 127.0.0.1, and user and token files: the paths of
/// the certificate, its key, the users and the tokens.
fn tls_and_auth_files() -> (crate::ops::Pki, [String; 4]) {
    let pki = make_pki();
    let (users, tokens) = auth_files(pki.dir.path());
    let file = |n: &str| pki.dir.path().join(n).display().to_string();
    let files = [
        file("good.crt"),
        file("good.key"),
        users.display().to_string(),
        tokens.display().to_string(),
    ];
    (pki, files)
}

#[tokio::test]
async fn server_only_over_tls_with_basic_auth_end_to_end() {
    let redis = RedisServer::start();
    let t = tree();
    let (pki, [crt, key, users, _]) = tls_and_auth_files();
    let server = server_only(
        t.root(),
        &redis.url(),
        &[
            "--tls-cert",
            &crt,
            "--tls-key",
            &key,
            "--basic-auth-file",
            &users,
            "--wait",
            "20",
        ],
    );
    assert!(server.log.lock().unwrap().contains("Serving on https://"));
    let _w = worker(t.root(), &redis.url(), &["--num-workers", "1"]);
    let good = basic(USER, PASSWORD);
    // Without credentials, or with a wrong password: 401, nothing else.
    for auth in [None, Some(basic(USER, "wrong").as_str())] {
        let r = https_get_with(&server.addr, "/targets/dyn", &pki.ca_pem, auth)
            .await
            .expect("https");
        assert!(r.starts_with("HTTP/1.1 401"), "{r}");
        assert!(!r.contains("10.0.0.8"), "{r}");
    }
    // With them: the worker's result, through Redis, over TLS.
    let r = https_get_with(&server.addr, "/targets/dyn", &pki.ca_pem, Some(&good))
        .await
        .expect("https");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("10.0.0.8:9100"), "{r}");
    let r = https_get_with(&server.addr, "/targets/static", &pki.ca_pem, Some(&good))
        .await
        .expect("https");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("10.0.0.7:9100"), "{r}");
    // /metrics is protected too (no --public-metrics).
    let r = https_get(&server.addr, "/metrics", &pki.ca_pem)
        .await
        .expect("https");
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    let r = https_get_with(&server.addr, "/metrics", &pki.ca_pem, Some(&good))
        .await
        .expect("https");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("httpsd_redis_up"), "{r}");
    // Plain HTTP to the TLS port gets no answer.
    let plain = crate::helpers::client()
        .get(format!("http://{}/targets/static", server.addr))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
}

#[tokio::test]
async fn server_only_bearer_auth_public_metrics_and_request_log() {
    let redis = RedisServer::start();
    let t = tree();
    let dir = tempfile::tempdir().unwrap();
    let (_, tokens) = auth_files(dir.path());
    let tokens = tokens.display().to_string();
    let server = server_only(
        t.root(),
        &redis.url(),
        &[
            "--bearer-token-file",
            &tokens,
            "--public-metrics",
            "--log-format",
            "json",
            "-r",
            "/sd",
            "--wait",
            "20",
        ],
    );
    let _w = worker(t.root(), &redis.url(), &["--num-workers", "1"]);
    let bearer = format!("Bearer {TOKEN}");
    let (status, body, www) = status_with(&server.url("/sd/targets/static"), None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(www, vec!["Bearer realm=\"httpsd\"".to_string()]);
    let (status, _, _) = status_with(&server.url("/sd/targets/static"), Some("Bearer nope")).await;
    assert_eq!(status, 401);
    let (status, body, _) = status_with(&server.url("/sd/targets/static"), Some(&bearer)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("10.0.0.7:9100"), "{body}");
    // --public-metrics opens both metrics routes, and only them.
    for path in ["/metrics", "/sd/metrics"] {
        let (status, body, _) = status_with(&server.url(path), None).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains("httpsd_redis_up"), "{body}");
    }
    // One access-log line per request, refused ones included.
    let lines = access_log_lines(&server, 5).await;
    assert_eq!(lines[0]["path"], "/sd/targets/static");
    assert_eq!(lines[0]["status"], 401);
    assert_eq!(lines[2]["status"], 200);
    assert_eq!(lines[3]["path"], "/metrics");
    assert!(lines[2]["duration_ms"].as_f64().is_some(), "{}", lines[2]);
}

#[tokio::test]
async fn worker_only_metrics_server_takes_the_listener_options() {
    let redis = RedisServer::start();
    let t = tree();
    let (pki, [crt, key, users, tokens]) = tls_and_auth_files();
    let w = worker(
        t.root(),
        &redis.url(),
        &[
            "--num-workers",
            "1",
            "--tls-cert",
            &crt,
            "--tls-key",
            &key,
            "--basic-auth-file",
            &users,
            "--bearer-token-file",
            &tokens,
        ],
    );
    assert!(w.log.lock().unwrap().contains("Serving on https://"));
    let r = https_get(&w.addr, "/metrics", &pki.ca_pem)
        .await
        .expect("https");
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
    for auth in [basic(USER, PASSWORD), format!("Bearer {TOKEN}")] {
        let r = https_get_with(&w.addr, "/metrics", &pki.ca_pem, Some(&auth))
            .await
            .expect("https");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.contains("httpsd_redis_up"), "{r}");
    }
    // The health page at / is behind the same door.
    let r = https_get(&w.addr, "/", &pki.ca_pem).await.expect("https");
    assert!(r.starts_with("HTTP/1.1 401"), "{r}");
}
