//! Hostile and careless raw TCP clients, and the assertions both programs' tests make
//! with them (included with `#[path]` by httpsd's and multiproc-exporter's tests, so
//! that the two check the shared listener the same way).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a slowloris connection sends first: a request line and one header, never the
/// blank line that ends the headers.
const PARTIAL: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";

/// A slowloris client: holds `n` connections that never finish their headers (one more
/// header line each second), and opens a new one whenever the server closes one.
pub struct Slowloris {
    stop: Arc<AtomicBool>,
    /// Connections the server closed (and that were opened again).
    pub closed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Slowloris {
    /// Starts holding `n` connections to `addr` (for at most 120 s).
    pub fn start(addr: SocketAddr, n: usize) -> Slowloris {
        let stop = Arc::new(AtomicBool::new(false));
        let closed = Arc::new(AtomicU64::new(0));
        let open = move || -> Option<TcpStream> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
            s.write_all(PARTIAL).ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        };
        let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| open()).collect();
        let (stop2, closed2) = (stop.clone(), closed.clone());
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(120);
            let mut last_line = Instant::now();
            while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
                let trickle = last_line.elapsed() >= Duration::from_secs(1);
                if trickle {
                    last_line = Instant::now();
                }
                for slot in conns.iter_mut() {
                    let alive = match slot {
                        Some(s) => {
                            let mut buf = [0u8; 512];
                            let read_ok = match s.read(&mut buf) {
                                Ok(0) => false,
                                Ok(_) => true,
                                Err(e) => e.kind() == ErrorKind::WouldBlock,
                            };
                            read_ok && (!trickle || s.write_all(b"X-Slow: 1\r\n").is_ok())
                        }
                        None => false,
                    };
                    if !alive {
                        if slot.is_some() {
                            closed2.fetch_add(1, Ordering::Relaxed);
                        }
                        *slot = open();
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Slowloris {
            stop,
            closed,
            thread: Some(thread),
        }
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One `GET path` on a new connection (`Connection: close`): the status, or an error
/// when no complete status line arrived within `timeout`.
pub fn status(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))
}

/// With more slowloris connections than `limit` held open, a well-behaved client
/// still gets 200 for `path`, each time within `patience`.
pub fn assert_served_under_slowloris(addr: SocketAddr, path: &str, limit: usize) {
    let patience = Duration::from_secs(5);
    assert_eq!(
        status(addr, path, patience).unwrap(),
        200,
        "before the attack"
    );
    let attack = Slowloris::start(addr, limit * 2);
    // Let the attack fill every slot first.
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..10 {
        match status(addr, path, patience) {
            Ok(200) => {}
            other => panic!("request {i} under slowloris: {other:?} (within {patience:?})"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        attack.closed.load(Ordering::Relaxed) > 0,
        "the server never closed a slowloris connection"
    );
}

/// Sends one header line every second on a new connection until the server closes
/// it: the time from connecting to the close (at most 30 s, then panics).
pub fn trickle_until_closed(addr: SocketAddr) -> Duration {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    while t0.elapsed() < Duration::from_secs(30) {
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => return t0.elapsed(),
            Ok(n) => {
                // An error response (e.g. 408) before the close is fine.
                let _ = n;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return t0.elapsed(),
        }
        if s.write_all(b"X-Trickle: 1\r\n").is_err() {
            return t0.elapsed();
        }
    }
    panic!("a trickling client kept its connection for 30 s");
}

/// Sends one complete keep-alive `GET path`, reads the response, then waits without
/// sending anything: the time from the response to the server's close (at most 30 s,
/// then panics).
pub fn idle_until_closed(addr: SocketAddr, path: &str) -> Duration {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    got.extend_from_slice(&buf[..n]);
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    let t0 = Instant::now();
    loop {
        match s.read(&mut buf) {
            // The rest of the body, if it came in pieces.
            Ok(n) if n > 0 => continue,
            Ok(_) => return t0.elapsed(),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("an idle keep-alive connection stayed open for 30 s")
            }
            Err(_) => return t0.elapsed(),
        }
    }
}
