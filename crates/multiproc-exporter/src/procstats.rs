//! `--process-metrics`: what Python's `ProcessCollector` reports, for every live writer of
//! the directory, with a `pid` label: read from `/proc/<pid>/{stat,fd,limits}` the way
//! `prometheus_client.process_collector` reads them. A pid is taken from the `.db` file
//! names (`<kind>_<pid>.db`), so this does not depend on the files' contents. When the
//! writers' pid namespace is not visible (the sidecar runs in another container without a
//! shared pid namespace) nothing is reported, with one log line saying why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use exposition::{MetricFamily, MetricType, Sample};
use nix::unistd::{SysconfVar, sysconf};

use crate::liveness::{PidState, namespace_visible, pid_state};

/// The owner pids named by the directory's `*.db` files, each with the change time of
/// its newest file (Unix seconds).
pub fn writer_pids(dir: &Path) -> BTreeMap<i32, f64> {
    use std::os::unix::fs::MetadataExt as _;
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".db"))
            .and_then(|stem| stem.rsplit_once('_'))
            .and_then(|(_, pid)| pid.parse::<i32>().ok())
            .filter(|p| *p > 0)
        else {
            continue;
        };
        // A file that vanished since the listing counts as new (never hides its writer).
        let ctime = e
            .metadata()
            .map(|m| m.ctime() as f64 + m.ctime_nsec() as f64 / 1e9)
            .unwrap_or(f64::INFINITY);
        let newest = out.entry(pid).or_insert(ctime);
        *newest = newest.max(ctime);
    }
    out
}

/// One process's numbers, as `ProcessCollector` computes them.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    /// The process id.
    pub pid: i32,
    /// `(utime + stime) / CLK_TCK`.
    pub cpu_seconds: f64,
    /// `vsize`.
    pub virtual_bytes: f64,
    /// `rss * PAGE_SIZE`.
    pub resident_bytes: f64,
    /// `starttime / CLK_TCK + btime`.
    pub start_time: f64,
    /// Entries of `/proc/<pid>/fd` (`None` when unreadable: another user).
    pub open_fds: Option<f64>,
    /// The soft `Max open files` limit (`None` when unreadable or unlimited).
    pub max_fds: Option<f64>,
}

/// The constants of the arithmetic: clock ticks, page size, boot time.
#[derive(Debug, Clone, Copy)]
struct Clock {
    ticks: f64,
    page: f64,
    btime: f64,
}

fn clock() -> Option<Clock> {
    let ticks = sysconf(SysconfVar::CLK_TCK).ok().flatten()? as f64;
    let page = sysconf(SysconfVar::PAGE_SIZE).ok().flatten()? as f64;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse::<f64>()
        .ok()?;
    Some(Clock { ticks, page, btime })
}

fn read_process(pid: i32, c: Clock) -> Option<ProcessStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state) of proc(5): field n is f[n - 3].
    let num = |n: usize| f.get(n - 3)?.parse::<f64>().ok();
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as f64);
    let max_fds = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<f64>().ok())
        });
    Some(ProcessStats {
        pid,
        cpu_seconds: num(14)? / c.ticks + num(15)? / c.ticks,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)? * c.page,
        start_time: num(22)? / c.ticks + c.btime,
        open_fds,
        max_fds,
    })
}

/// Reads the process metrics of a directory's writers.
#[derive(Debug)]
pub struct ProcStats {
    dir: PathBuf,
    /// Whether the namespace was visible last time (to log once per change).
    visible: Mutex<Option<bool>>,
}

impl ProcStats {
    /// Process metrics of `dir`'s writers.
    pub fn new(dir: PathBuf) -> ProcStats {
        ProcStats {
            dir,
            visible: Mutex::new(None),
        }
    }

    /// The live writers' numbers, by pid (empty when their namespace is not visible).
    pub fn read(&self) -> Vec<ProcessStats> {
        let pids = writer_pids(&self.dir);
        let owners: BTreeSet<i32> = pids.keys().copied().collect();
        let visible = pids.is_empty() || namespace_visible(&owners);
        {
            let mut last = self.visible.lock().unwrap_or_else(|p| p.into_inner());
            if *last != Some(visible) {
                if visible {
                    if last.is_some() {
                        tracing::info!("process metrics on: the writers' pids are visible");
                    }
                } else {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        "process metrics off: no writer of the directory is visible in our pid \
                         namespace (none is running, or the namespace is not shared with the \
                         application: shareProcessNamespace in Kubernetes, --pid in Docker)"
                    );
                }
                *last = Some(visible);
            }
        }
        if !visible {
            return Vec::new();
        }
        let Some(c) = clock() else {
            return Vec::new();
        };
        pids.into_iter()
            .filter(|&(pid, _)| pid_state(pid) == PidState::Alive)
            .filter_map(|(pid, ctime)| read_process(pid, c).map(|s| (s, ctime)))
            // A dead writer's pid may now belong to an unrelated process, one that started
            // after the file was written. (Cheaper than reading every process's maps; 1 s
            // of slack for btime's whole seconds.)
            .filter(|(s, ctime)| s.start_time <= ctime + 1.0)
            .map(|(s, _)| s)
            .collect()
    }

    /// The `process_*` families of the live writers.
    pub fn families(&self) -> Vec<MetricFamily> {
        families(&self.read())
    }
}

/// `ProcessCollector`'s families (its names and help texts), one sample per process.
pub fn families(stats: &[ProcessStats]) -> Vec<MetricFamily> {
    type Get = fn(&ProcessStats) -> Option<f64>;
    let specs: [(&str, &str, MetricType, Get); 6] = [
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            MetricType::Gauge,
            |s| Some(s.virtual_bytes),
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            MetricType::Gauge,
            |s| Some(s.resident_bytes),
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            MetricType::Gauge,
            |s| Some(s.start_time),
        ),
        (
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            MetricType::Counter,
            |s| Some(s.cpu_seconds),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            MetricType::Gauge,
            |s| s.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            MetricType::Gauge,
            |s| s.max_fds,
        ),
    ];
    if stats.is_empty() {
        return Vec::new();
    }
    specs
        .into_iter()
        .map(|(name, help, typ, get)| {
            let mut fam = MetricFamily::new(name, help, typ);
            let sample_name = if typ == MetricType::Counter {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            for s in stats {
                if let Some(v) = get(s) {
                    let pid = s.pid.to_string();
                    fam.samples
                        .push(Sample::new(sample_name.clone(), &[("pid", &pid)], v));
                }
            }
            fam
        })
        .filter(|f| !f.samples.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_from_names() {
        let d = tempfile::tempdir().expect("tempdir");
        for n in [
            "counter_12.db",
            "gauge_livesum_345.db",
            "histogram_x.db",
            "notes.txt",
            "counter_0.db",
        ] {
            std::fs::write(d.path().join(n), b"").expect("write");
        }
        let pids: Vec<i32> = writer_pids(d.path()).into_keys().collect();
        assert_eq!(pids, vec![12, 345]);
    }

    #[test]
    fn own_process_reads() {
        let c = clock().expect("procfs");
        let me = std::process::id() as i32;
        let s = read_process(me, c).expect("own stats");
        assert!(s.resident_bytes > 0.0 && s.virtual_bytes >= s.resident_bytes);
        assert!(s.open_fds.is_some_and(|n| n >= 3.0));
        assert!(s.max_fds.is_some());
    }
}
