//! Worker processes as the operating system sees them: starting the interpreter (the
//! crate's only `unsafe`, a `pre_exec` hook), the pipes of forked copies, a copy's
//! exit status read from `/proc`, killing a process group, describing an exit.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use tokio::process::{Child, Command};

use crate::config::PoolConfig;

/// Starts `python -c BOOT` (`config.boot`) as the leader of its own process group, with piped stdio,
/// killed when the pool's process dies, and with the fds in `passed` (the forked
/// copies' pipe ends) kept open across exec.
pub(crate) fn spawn_interpreter(
    config: &PoolConfig,
    passed: Arc<Vec<OwnedFd>>,
) -> std::io::Result<Child> {
    let mut command = Command::new(&config.python);
    command
        .arg("-c")
        .arg(&config.boot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for name in &config.env_remove {
        command.env_remove(name);
    }
    // The worker dies with this process even if it is killed with SIGKILL. Set here
    // rather than by the worker itself: Python can only reach prctl(2) through
    // ctypes, whose import was a fifth of a worker's start-up. The copies' pipe ends
    // are let through exec.
    // SAFETY: between fork and exec, the closure only makes the prctl(2) and fcntl(2)
    // system calls, which are async-signal-safe; it allocates nothing and takes no
    // lock (it borrows fds from a vector built before the fork).
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            for fd in passed.iter() {
                let keep = nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty());
                nix::fcntl::fcntl(fd, keep)?;
            }
            Ok(())
        });
    }
    // Dropping `command` on return leaves the copies' ends to the first worker alone:
    // a copy that is never made shows as its pipes closing.
    command.spawn()
}

/// The pool's ends of one worker's stdin, stdout and stderr.
pub(crate) type PipeEnds = (OwnedFd, OwnedFd, OwnedFd);

/// Pipes for one forked copy: the pool's ends (stdin, stdout, stderr of the copy), and
/// the copy's ends, which the first worker inherits and the copy makes its fds 0-2.
pub(crate) fn copy_pipes() -> Option<(PipeEnds, [OwnedFd; 3])> {
    let flags = nix::fcntl::OFlag::O_CLOEXEC;
    let (in_r, in_w) = nix::unistd::pipe2(flags).ok()?;
    let (out_r, out_w) = nix::unistd::pipe2(flags).ok()?;
    let (err_r, err_w) = nix::unistd::pipe2(flags).ok()?;
    let theirs = [in_r, out_w, err_w];
    // A pipe on fd 0-2 (this process started with a standard stream closed) would be
    // overwritten by the first worker's own stdio: no copy then.
    if theirs.iter().any(|fd| fd.as_raw_fd() < 3) {
        return None;
    }
    Some(((in_w, out_r, err_r), theirs))
}

/// Makes this process a child subreaper: a forked copy that outlives the first worker
/// becomes our child rather than init's, so it stays a zombie whose exit status can be
/// read ([`zombie_status`]) until we exit. Process-wide, hence only for one-command
/// pools.
pub(crate) fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::debug!(error = %e, "cannot become a child subreaper");
    }
}

/// Waits for a worker's process to exit (a copy's exit shows as its channel closing).
pub(crate) async fn exited(child: &mut Option<Child>) -> Option<ExitStatus> {
    match child.as_mut() {
        Some(child) => child.wait().await.ok(),
        None => std::future::pending().await,
    }
}

/// The exit status of a forked copy that has exited: its parent (the first worker)
/// does not reap it, so it stays a zombie whose status `/proc` shows (field 52 of
/// `stat`). `None` while it runs, or once it is gone (its parent exited too).
pub(crate) fn zombie_status(pid: i32) -> Option<Option<ExitStatus>> {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Some(None);
    };
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // fields[0] is field 3 (the state), so field 52 (exit_code) is fields[49].
    if fields.first() != Some(&"Z") {
        return None;
    }
    Some(
        fields
            .get(49)
            .and_then(|code| code.parse::<i32>().ok())
            .map(ExitStatus::from_raw),
    )
}

/// "killed by SIGKILL", "exited with status 3".
pub(crate) fn describe_exit(status: ExitStatus) -> String {
    if let Some(sig) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| format!("signal {sig}"));
        format!("killed by {name}")
    } else if let Some(code) = status.code() {
        format!("exited with status {code}")
    } else {
        status.to_string()
    }
}

/// Kills a worker's whole process group (what its code started goes with it).
pub(crate) fn kill_group(pgid: i32) {
    if pgid > 1 {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
