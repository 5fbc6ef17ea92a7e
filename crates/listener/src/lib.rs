//! The accept loop both programs serve on: one task per connection, a connection
//! limit, a header-read and an idle keep-alive timeout, fairness when the limit is
//! reached (the connection that has waited longest without sending a request is closed
//! to let a new one in), optional TLS (feature `tls`; the handshake runs in the
//! connection's task, bounded in time), and a graceful shutdown that stops accepting
//! and lets in-flight requests finish.
//!
//! `axum::serve` has no connection limit nor timeouts, which a service that one
//! careless client must not take down needs, so the loop is ours (as in tokio's
//! mini-redis).

mod tracker;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use tracker::{Conn, GuardedBody, Tracker, Verdict};

/// How long in-flight requests may take to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client may take to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Interval of HTTP/2 keep-alive pings on a connection with no traffic, and how long
/// an answer may take: a peer that vanished without closing is found within 40 s.
pub const HTTP2_PING: Duration = Duration::from_secs(20);

/// The bounds every connection is held to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once (at least 1).
    pub max_connections: usize,
    /// How long a new connection may take to send its first request's headers.
    pub header_timeout: Duration,
    /// How long a connection may stay open between requests (keep-alive): the next
    /// request's headers must arrive within it.
    pub idle_timeout: Duration,
}

/// Default of [`ConnectionLimits::max_connections`] (the original's `-c` default).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;
/// Default of [`ConnectionLimits::header_timeout`]: a client on a working network sends
/// its headers in milliseconds; 5 s leaves room for a slow link.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default of [`ConnectionLimits::idle_timeout`]: longer than Prometheus's default 60 s
/// refresh and scrape intervals, so that its connection is reused between them
/// (nginx's `keepalive_timeout` default is the same).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl ConnectionLimits {
    /// The defaults with at most `max_connections` connections.
    pub fn with_max(max_connections: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            ..ConnectionLimits::default()
        }
    }
}

/// Serves `app` over plain HTTP on `listener` until `shutdown` resolves, then drains.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve(listener, app, limits, Plain, shutdown).await
}

/// Serves `app` on `listener` (HTTPS when `tls` is set) until `shutdown` resolves.
#[cfg(feature = "tls")]
pub async fn run_with_tls(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    match tls {
        Some(config) => {
            let acceptor = Tls(tokio_rustls::TlsAcceptor::from(config));
            serve(listener, app, limits, acceptor, shutdown).await
        }
        None => run(listener, app, limits, shutdown).await,
    }
}

/// Turns an accepted TCP stream into the stream HTTP is spoken on.
trait Handshake: Clone + Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn handshake(
        &self,
        stream: TcpStream,
    ) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

/// Plain HTTP: the TCP stream itself.
#[derive(Clone)]
struct Plain;

impl Handshake for Plain {
    type Stream = TcpStream;
    async fn handshake(&self, stream: TcpStream) -> std::io::Result<TcpStream> {
        Ok(stream)
    }
}

/// HTTPS: a rustls handshake, bounded by [`TLS_HANDSHAKE_TIMEOUT`].
#[cfg(feature = "tls")]
#[derive(Clone)]
struct Tls(tokio_rustls::TlsAcceptor);

#[cfg(feature = "tls")]
impl Handshake for Tls {
    type Stream = tokio_rustls::server::TlsStream<TcpStream>;
    async fn handshake(&self, stream: TcpStream) -> std::io::Result<Self::Stream> {
        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, self.0.accept(stream))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))?
    }
}

fn builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    // hyper's own header timeout also runs while a keep-alive connection waits for its
    // next request, which would make it the idle timeout: ours (`hold`) bound both.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_PING)
        .keep_alive_timeout(HTTP2_PING);
    builder
}

async fn serve<H: Handshake>(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    handshake: H,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let tracker = Arc::new(Tracker::new());
    let graceful = GracefulShutdown::new();
    let builder = builder();
    tokio::pin!(shutdown);
    'accept: loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Every slot taken: close the connection that has waited longest without a
        // request, so that clients holding slots idle cannot lock others out. When all
        // are busy with requests, wait for one to end (looking again now and then, in
        // case the one picked started a request meanwhile and stayed).
        let permit = loop {
            if let Ok(p) = slots.clone().try_acquire_owned() {
                break p;
            }
            tracker.evict_longest_waiting();
            tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => break p,
                    Err(_) => break 'accept,
                },
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = &mut shutdown => break 'accept,
            }
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let handshake = handshake.clone();
        let app = app.clone();
        let tracker = tracker.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let stream = match handshake.handshake(stream).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "handshake failed");
                    return;
                }
            };
            let conn = tracker.open();
            let service = {
                let conn = conn.clone();
                hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let guard = conn.start_request();
                    let response = app.clone().oneshot(req);
                    async move {
                        let response = response.await?;
                        Ok::<_, Infallible>(response.map(|inner| GuardedBody {
                            inner,
                            _guard: guard,
                        }))
                    }
                })
            };
            let http = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let http = watcher.watch(http.into_owned());
            if let Some(why) = hold(http, &conn, &limits).await {
                tracing::debug!(%peer, "closing the connection: {why}");
            }
            tracker.close(&conn);
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("in-flight requests did not finish within {DRAIN_TIMEOUT:?}; exiting anyway");
        }
    }
    Ok(())
}

/// Drives `http` until it ends, or until `conn` has waited for a request past its
/// timeout or was picked to make room: then drops it (closing the socket; no request
/// is in flight then) and says why.
async fn hold<E: std::fmt::Display>(
    http: impl Future<Output = Result<(), E>>,
    conn: &Arc<Conn>,
    limits: &ConnectionLimits,
) -> Option<&'static str> {
    tokio::pin!(http);
    // Bounded: every pass either ends the connection or sleeps until a deadline that
    // lies in the future.
    loop {
        let until = match conn.verdict(limits, tokio::time::Instant::now()) {
            Verdict::Until(t) => t,
            Verdict::HeaderTimeout => return Some("no request headers within the header timeout"),
            Verdict::Idle => return Some("idle past the idle timeout"),
        };
        tokio::select! {
            r = &mut http => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return None;
            }
            () = tokio::time::sleep_until(until) => {}
            () = conn.evict.notified() => {
                if conn.is_waiting() {
                    return Some("the connection limit was reached and it waited longest");
                }
                conn.keep();
            }
        }
    }
}

/// Starts a Tokio runtime, binds `host:port` and runs `serve` on the bound listener
/// until it returns: how every serving command starts (`what` names the listener in
/// the bind error).
pub fn run_blocking<F, Fut>(host: &str, port: u16, what: &str, serve: F) -> anyhow::Result<()>
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let addr = format!("{host}:{port}");
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}{what}: {e}"))?;
        serve(listener).await
    })
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
