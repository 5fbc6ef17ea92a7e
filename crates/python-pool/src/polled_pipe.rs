//! The read end of a pipe, read by polling on a timer instead of waiting for data.
//!
//! A reader that waits on a pipe is woken by every write to it: the writer pays for
//! the wake-up and the reader's thread goes idle and wakes once per write. A batch of
//! short calls (httpsd's `check`) gets one reply and one output mark per module from
//! each worker, about one every 50 microseconds per worker, and those wake-ups (on a virtual machine,
//! each one an exit to the hypervisor) cost more than the generators. Polled, the
//! pipe is not in the runtime's epoll set at all: writes wake nobody, and each poll
//! reads everything written since the last one. The price is up to one `POLL` of
//! latency per read, which batches hide by keeping the next batch queued in each
//! worker. Tokio has no such mode, hence this small type.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use nix::errno::Errno;
use tokio::io::{AsyncRead, ReadBuf};

/// Time between two looks at an empty pipe (the runtime's timer has 1 ms ticks).
const POLL: Duration = Duration::from_millis(1);

/// A pipe's read end, read without blocking and polled every [`POLL`] while empty.
pub struct PolledPipe {
    fd: OwnedFd,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl PolledPipe {
    /// Wraps `fd` (a pipe's read end) and makes it non-blocking.
    pub fn new(fd: OwnedFd) -> io::Result<PolledPipe> {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let flags = OFlag::from_bits_retain(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        Ok(PolledPipe { fd, sleep: None })
    }
}

impl AsyncRead for PolledPipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            match nix::unistd::read(&self.fd, buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => self.sleep = Some(Box::pin(tokio::time::sleep(POLL))),
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn reads_what_is_written_later_and_then_the_end() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut pipe = PolledPipe::new(r).unwrap();
        let writer = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(20));
            nix::unistd::write(&w, b"one\n").unwrap();
            std::thread::sleep(Duration::from_millis(20));
            nix::unistd::write(&w, b"two\n").unwrap();
            // Dropping `w` closes the pipe: the reader sees its end.
        });
        let mut all = Vec::new();
        pipe.read_to_end(&mut all).await.unwrap();
        writer.await.unwrap();
        assert_eq!(all, b"one\ntwo\n");
    }
}
