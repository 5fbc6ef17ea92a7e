//! Whether the process that owns a `.db` file is alive, and whether we can see the
//! writers' PID namespace at all. Used to skip re-reading files of dead processes and by
//! the archiver to prove death.

use std::collections::BTreeSet;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// What `kill(pid, 0)` says about a pid in our PID namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidState {
    /// A process with this pid exists (`EPERM` counts as existing).
    Alive,
    /// No process with this pid exists in our namespace.
    Dead,
}

/// Probes a pid with signal 0.
pub fn pid_state(pid: i32) -> PidState {
    if pid <= 0 {
        return PidState::Alive;
    }
    match kill(Pid::from_raw(pid), None) {
        Ok(()) => PidState::Alive,
        Err(Errno::ESRCH) => PidState::Dead,
        // EPERM: it exists under another user. Anything else: assume alive (safe side).
        Err(_) => PidState::Alive,
    }
}

/// Whether `/proc/<pid>/maps` shows the process mapping one of its own `.db` files
/// (prometheus_client keeps them mmapped for life). `None` when the maps cannot be read
/// (another user without ptrace rights, or no procfs).
pub fn maps_own_db_file(pid: i32) -> Option<bool> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let suffix = format!("_{pid}.db");
    Some(
        maps.lines()
            .any(|l| l.ends_with(&suffix) || l.ends_with(&format!("{suffix} (deleted)"))),
    )
}

/// Whether the directory's writers are visible from our PID namespace: true when at
/// least one owner pid is alive here and is not provably an unrelated process (its maps,
/// when readable, show it mapping its own `.db` file). Coincidental pids (our pid 1 is
/// not the app's pid 1) are thereby not taken as proof.
///
/// When the maps cannot be read (the writers run as another user), an alive pid counts,
/// except pid 1 and our own pid: every container has a pid 1, so it is the classic
/// coincidence, and we write no `.db` files ourselves.
pub fn namespace_visible(owner_pids: &BTreeSet<i32>) -> bool {
    namespace_prover(owner_pids).is_some()
}

/// The first owner pid that proves the namespace visible (see [`namespace_visible`]).
pub fn namespace_prover(owner_pids: &BTreeSet<i32>) -> Option<i32> {
    owner_pids
        .iter()
        .copied()
        .find(|&pid| proves_namespace(pid))
}

/// Whether this owner pid is alive here and not provably an unrelated process (see
/// [`namespace_visible`]).
pub fn proves_namespace(pid: i32) -> bool {
    pid_state(pid) == PidState::Alive
        && match maps_own_db_file(pid) {
            Some(owns) => owns,
            None => pid != 1 && pid != std::process::id() as i32,
        }
}
