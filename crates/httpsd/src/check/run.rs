//! Runs every generator of a `check` once, concurrently and bounded, and validates each
//! output with the same code as `serve` (`validate.rs`) under the stricter check profile.
//!
//! Static files are read directly (no settle logic: `check` looks at a tree at rest)
//! on blocking threads; Python and executable generators go through the same runners
//! as `serve`, in check mode, so they get the same timeout and isolation.

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use super::progress::Tracker;
use super::report::{GeneratorCheck, Status};
use crate::error::{ErrorKind, GeneratorError};
use crate::params::Params;
use crate::runner::python::CheckEvent;
use crate::runner::{RunMode, Runners};
use crate::static_files;
use crate::tree::{GeneratorFile, GeneratorKind};
use crate::validate::{self, Profile, TargetList};

/// How a check runs its generators.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// The validation rules.
    pub profile: Profile,
    /// Largest static file accepted (same limit as `serve`).
    pub max_file_size: u64,
    /// How many generators run at once.
    pub concurrency: usize,
    /// The runners' own time limit (`--max-run-time`); they enforce it, this is only a
    /// last-resort guard so that `check` always ends.
    pub max_run_time: Duration,
}

/// Extra time given to the runners to kill a run and report its timeout themselves.
const GUARD_GRACE: Duration = Duration::from_secs(5);

/// One generator to check, with the path shown to the user.
#[derive(Debug, Clone)]
pub struct Job {
    /// The generator.
    pub generator: GeneratorFile,
    /// Its path as shown (root as typed joined with the relative path).
    pub file: String,
}

/// The dynamic runners, or why they could not be started (then every dynamic generator
/// fails with that reason: it would fail the same way in production).
pub type RunnersOrError = Result<Arc<Runners>, GeneratorError>;

/// Checks every job and returns the results in the jobs' order.
///
/// Static files are checked while `start_runners` (the Python pool's start-up, the
/// slowest step of a small check) is still running; it is only awaited when the tree
/// has dynamic generators, and the runners are shut down before returning.
pub async fn check_all<F>(
    jobs: Vec<Job>,
    start_runners: F,
    options: RunOptions,
    tracker: Arc<Tracker>,
) -> Vec<GeneratorCheck>
where
    F: Future<Output = RunnersOrError>,
{
    let (statics, dynamics): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .enumerate()
        .partition(|(_, job)| job.generator.kind.is_static());
    // Reading small files is CPU-bound: one thread per core keeps every core busy,
    // but one core is left to the Python interpreter's start-up when there are dynamic
    // generators: everything Python does waits for it, while static files can be
    // checked at any time.
    let cores = crate::runner::cores();
    let threads = if dynamics.is_empty() {
        cores
    } else {
        cores.saturating_sub(1).max(1)
    };
    let static_runs = check_statics(statics, options, threads, &tracker);
    let dynamic_runs = async {
        if dynamics.is_empty() {
            return Vec::new();
        }
        let runners = start_runners.await;
        let (python, executables): (Vec<_>, Vec<_>) = dynamics
            .into_iter()
            .partition(|(_, job)| job.generator.kind == GeneratorKind::Python);
        let python_runs = check_python(python, &runners, options, &tracker);
        let executable_runs = run_stream(
            executables,
            Some(&runners),
            options,
            options.concurrency,
            &tracker,
        );
        let (a, b) = futures::join!(python_runs, executable_runs);
        if let Ok(r) = &runners {
            r.shutdown().await;
        }
        a.into_iter().chain(b).collect()
    };
    let (a, b) = futures::join!(static_runs, dynamic_runs);
    let mut results: Vec<(usize, GeneratorCheck, Option<TargetList>)> =
        a.into_iter().chain(b).collect();
    results.sort_by_key(|(i, _, _)| *i);
    let (mut checks, values): (Vec<GeneratorCheck>, Vec<Option<TargetList>>) =
        results.into_iter().map(|(_, c, v)| (c, v)).unzip();
    if options.profile.warnings {
        warn_duplicates_across_generators(&mut checks, &values);
    }
    checks.into_iter().map(GeneratorCheck::finish).collect()
}

/// One checked generator with its index, and its output when valid.
type Checked = (usize, GeneratorCheck, Option<TargetList>);

/// Checks static files on `threads` blocking threads that share one queue (a task
/// per file would cost more in hand-offs than reading a small file does).
async fn check_statics(
    jobs: Vec<(usize, Job)>,
    options: RunOptions,
    threads: usize,
    tracker: &Arc<Tracker>,
) -> Vec<Checked> {
    let count = jobs.len();
    let queue = Arc::new(Mutex::new(jobs.into_iter()));
    let handles: Vec<_> = (0..threads.clamp(1, count.max(1)))
        .map(|_| {
            let (queue, tracker) = (queue.clone(), tracker.clone());
            tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some((index, job)) = next else {
                        return out;
                    };
                    tracker.start(index, &job.generator.rel);
                    let started = Instant::now();
                    let fallback = job.clone();
                    let profile = &options.profile;
                    // A panic while reading or validating one file fails that file.
                    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let value = read_static(&job.generator, options.max_file_size);
                        judge(job, value, started, profile)
                    }));
                    let (check, value) = checked.unwrap_or_else(|_| {
                        let e = GeneratorError::new(
                            ErrorKind::Internal,
                            format!("{}: checking the file panicked", fallback.generator.rel),
                        );
                        judge(fallback, Err(e), started, profile)
                    });
                    tracker.finish(index);
                    out.push((index, check, value));
                }
            })
        })
        .collect();
    let mut results = Vec::with_capacity(count);
    // The threads catch panics per file, so every one of them returns its part.
    for part in futures::future::join_all(handles)
        .await
        .into_iter()
        .flatten()
    {
        results.extend(part);
    }
    results
}

/// Checks Python generators as batches on the worker pool (one round trip per
/// batch, not per file), each file with its own time limit and result.
async fn check_python(
    jobs: Vec<(usize, Job)>,
    runners: &RunnersOrError,
    options: RunOptions,
    tracker: &Tracker,
) -> Vec<Checked> {
    let Ok(r) = runners else {
        return run_stream(jobs, Some(runners), options, options.concurrency, tracker).await;
    };
    if jobs.is_empty() {
        return Vec::new();
    }
    let items = jobs
        .iter()
        .map(|(i, job)| (*i, job.generator.clone()))
        .collect();
    let mut pending: HashMap<usize, (Job, Instant)> = jobs
        .into_iter()
        .map(|(i, job)| (i, (job, Instant::now())))
        .collect();
    let mut events = r.python().check_many(items);
    let mut results = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let Some(event) = events.recv().await else {
            break;
        };
        match event {
            CheckEvent::Started(index) => {
                if let Some((job, started)) = pending.get_mut(&index) {
                    *started = Instant::now();
                    tracker.start(index, &job.generator.rel);
                }
            }
            CheckEvent::Done(index, value, took) => {
                if let Some((job, _)) = pending.remove(&index) {
                    let (mut check, value) = judge(job, value, Instant::now(), &options.profile);
                    check.duration = took;
                    tracker.finish(index);
                    results.push((index, check, value));
                }
            }
        }
    }
    // Only if the pool lost track of a generator (a bug): it still gets a result.
    for (index, (job, started)) in pending {
        let e = GeneratorError::new(
            ErrorKind::Internal,
            format!("{}: the Python pool gave no result", job.generator.rel),
        );
        let (check, value) = judge(job, Err(e), started, &options.profile);
        tracker.finish(index);
        results.push((index, check, value));
    }
    results
}

/// Checks `jobs` (with their indexes), at most `limit` at once.
async fn run_stream(
    jobs: Vec<(usize, Job)>,
    runners: Option<&RunnersOrError>,
    options: RunOptions,
    limit: usize,
    tracker: &Tracker,
) -> Vec<Checked> {
    futures::stream::iter(jobs)
        .map(|(index, job)| async move {
            tracker.start(index, &job.generator.rel);
            let (check, value) = check_one(job, runners, options).await;
            tracker.finish(index);
            (index, check, value)
        })
        .buffer_unordered(limit.max(1))
        .collect()
        .await
}

/// Runs one dynamic generator and validates its output.
async fn check_one(
    job: Job,
    runners: Option<&RunnersOrError>,
    options: RunOptions,
) -> (GeneratorCheck, Option<TargetList>) {
    let started = Instant::now();
    let g = &job.generator;
    let value = match runners {
        Some(Ok(r)) => {
            let params = Params::empty();
            let run = r.run(g, &params, RunMode::Check);
            tokio::time::timeout(options.max_run_time + GUARD_GRACE, run)
                .await
                .unwrap_or_else(|_| {
                    Err(GeneratorError::new(
                        ErrorKind::Timeout,
                        format!(
                            "{}: no result within {:.1}s (--max-run-time)",
                            g.rel,
                            options.max_run_time.as_secs_f64()
                        ),
                    ))
                })
        }
        Some(Err(e)) => Err(e.clone()),
        None => Err(GeneratorError::new(
            ErrorKind::Internal,
            format!("{}: no runner for dynamic generators", g.rel),
        )),
    };
    judge(job, value, started, &options.profile)
}

/// Validates one generator's output (or records its error) and times it from
/// `started`. Also returns the output when it is valid, for the checks that look
/// across generators.
fn judge(
    job: Job,
    value: Result<Value, GeneratorError>,
    started: Instant,
    profile: &Profile,
) -> (GeneratorCheck, Option<TargetList>) {
    let g = job.generator;
    let mut check = GeneratorCheck {
        path: g.rel,
        file: job.file,
        kind: g.kind,
        status: Status::Fail,
        targets: 0,
        groups: 0,
        duration: Duration::ZERO,
        error: None,
        problems: Vec::new(),
    };
    let kept = match value {
        Ok(value) => {
            let report = validate::validate(&value, profile);
            check.targets = report.target_count;
            check.groups = report.group_count;
            let ok = report.is_ok();
            check.problems = report.problems;
            // Only valid outputs take part in cross-generator checks: a failing one
            // already fails, and more warnings about it would be noise. Only their
            // targets are kept, compactly: the tree is dropped here (issue 19).
            ok.then(|| TargetList::of(&value))
        }
        Err(e) => {
            check.error = Some(e);
            None
        }
    };
    check.duration = started.elapsed();
    (check, kept)
}

/// Reads a static generator with the same size limit and parser as `serve`.
fn read_static(g: &GeneratorFile, max_size: u64) -> Result<Value, GeneratorError> {
    let read_err = |e: std::io::Error| {
        GeneratorError::new(ErrorKind::Read, format!("cannot read {}: {e}", g.rel))
    };
    let file = fs::File::open(&g.abs).map_err(read_err)?;
    // Sized from the scan, so a file at rest is read in one call (plus the one that
    // sees its end).
    let expected = g.stamp.size.min(max_size).saturating_add(1);
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    // One byte past the limit tells "too large" apart from "exactly the limit".
    file.take(max_size.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > max_size {
        return Err(GeneratorError::new(
            ErrorKind::TooLarge,
            format!(
                "{} is more than the limit of {max_size} bytes (--max-file-size)",
                g.rel
            ),
        ));
    }
    static_files::parse_value(&g.rel, g.kind, &bytes)
}

/// Adds a warning for each target that a generator shares with an earlier generator
/// of the same directory: both are always served together (`/targets/<dir>`).
fn warn_duplicates_across_generators(checks: &mut [GeneratorCheck], values: &[Option<TargetList>]) {
    let mut by_dir: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, c) in checks.iter().enumerate() {
        if values[i].is_some() {
            let dir = c.path.rsplit_once('/').map_or("", |(d, _)| d);
            by_dir.entry(dir).or_default().push(i);
        }
    }
    let mut found: Vec<(usize, validate::Problem)> = Vec::new();
    for members in by_dir.values().filter(|m| m.len() > 1) {
        let outputs: Vec<(&str, &TargetList)> = members
            .iter()
            .filter_map(|&i| values[i].as_ref().map(|v| (checks[i].file.as_str(), v)))
            .collect();
        for (k, problem) in validate::duplicates_across(&outputs) {
            found.push((members[k], problem));
        }
    }
    for (i, problem) in found {
        checks[i].problems.push(problem);
    }
}
