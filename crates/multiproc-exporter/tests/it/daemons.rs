//! Real third-party daemons the outputs are tested against (node_exporter, the
//! Pushgateway), started on a free loopback port and killed by pid.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::*;

/// A daemon child process, killed when dropped.
pub struct Daemon {
    /// The child.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin` with `args` plus `--web.listen-address=ADDR` and waits until `/metrics`
/// answers; fails loudly when the program is missing.
pub fn start_daemon(bin: &str, package: &str, args: &[&str]) -> Daemon {
    for _ in 0..5 {
        let addr = free_addr();
        let mut child = Command::new(bin)
            .args(args)
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{bin} is needed by these tests (apt-get install {package}): {e}")
            });
        let up = wait_until(Duration::from_secs(15), || {
            matches!(child.try_wait(), Ok(Some(_)))
                || matches!(try_get(addr, "/metrics", &[]), Ok((200, _, _)))
        });
        if up && child.try_wait().ok().flatten().is_none() {
            return Daemon { child, addr };
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{bin} did not start");
}

/// The body of a daemon's `/metrics`.
pub fn daemon_metrics(d: &Daemon) -> String {
    let (status, _, body) = get(d.addr, "/metrics", &[]);
    assert_eq!(status, 200);
    String::from_utf8(body).expect("utf-8")
}
