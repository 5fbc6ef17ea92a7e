//! The `check` command: run every generator of a tree once, in check mode, and report
//! every problem with its file, group and rule; exit 0 (all pass), 1 (any failure) or
//! 2 (usage error). See `docs/check.md`.
//!
//! It is a different wiring of the same pieces as `serve`: the tree scan, the static
//! file parser, the runners and the validation rules are the ones `serve` uses.

pub mod exporters;
pub mod ignore;
pub mod progress;
pub mod report;
pub mod run;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{ErrorKind, GeneratorError};
use crate::runner::python::Warmth;
use crate::runner::{RunnerSettings, Runners};
use crate::tree::{self, GeneratorKind, Skipped};
use crate::validate::Profile;

use ignore::{IgnoreRules, display_path};
use report::{CheckReport, Ignored, Listed};
use run::{Job, RunOptions};

/// Output format of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// One PASS/FAIL line per generator, every problem, then a summary.
    Text,
    /// One JSON document (schema in docs/check.md).
    Json,
}

/// Validated settings of `check` (built by `cli::check`).
#[derive(Debug, Clone)]
pub struct CheckSettings {
    /// Canonical root directory.
    pub root: PathBuf,
    /// The root directory as typed (file names in the report start with it).
    pub typed_root: String,
    /// `--ignore-path` patterns.
    pub ignore_path: Vec<String>,
    /// Accept targets without a port.
    pub allow_missing_port: bool,
    /// Output format.
    pub format: OutputFormat,
    /// How many executable generators run at once (`None`: the default).
    pub jobs: Option<usize>,
    /// Largest static file accepted.
    pub max_file_size: u64,
    /// Settings of the runners.
    pub runner: RunnerSettings,
    /// `--python-workers` was given (otherwise check picks its own count).
    pub python_workers_given: bool,
    /// `--exporters DIR` (canonical): check its exporters too.
    pub exporters: Option<PathBuf>,
}

/// Runs `check` and returns the exit code: 0 when every generator passes, 1 otherwise.
pub fn run(settings: CheckSettings) -> anyhow::Result<ExitCode> {
    // One thread drives the workers' pipes: the work between two replies is small, and
    // more runtime threads only hand wake-ups to each other on cores that the Python
    // workers and the static-file threads keep busy.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(check_tree(&settings))?;
    let exporters = settings.exporters.as_ref().map(|dir| {
        rt.block_on(exporters::check_exporters(
            dir,
            &settings.runner,
            settings.max_file_size,
        ))
    });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match (settings.format, &exporters) {
        (OutputFormat::Text, _) => {
            report.write_text(&mut out)?;
            if let Some(e) = &exporters {
                e.write_text(&mut out)?;
            }
        }
        (OutputFormat::Json, None) => report.write_json(&mut out)?,
        (OutputFormat::Json, Some(e)) => {
            // One document: the generators' report with an `exporters` member.
            let mut doc = serde_json::to_value(&report)?;
            doc["exporters"] = serde_json::to_value(e)?;
            doc["ok"] = serde_json::Value::Bool(report.ok && e.ok);
            serde_json::to_writer_pretty(&mut out, &doc)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    let exporters_ok = exporters.as_ref().is_none_or(|e| e.ok);
    Ok(if report.ok && exporters_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Scans `root` (canonical), runs and validates every generator, and builds the report.
pub async fn check_tree(settings: &CheckSettings) -> anyhow::Result<CheckReport> {
    let root = settings.root.as_path();
    let runner = &settings.runner;
    let started = Instant::now();
    // Python's start-up (tens of milliseconds per interpreter) is the slowest step
    // of a check, so the pool starts while the tree is scanned, as soon as a quick
    // look finds a .py file; it is let go if the scan finds no Python generator
    // after all. A check runs each generator once, in batches: as many workers as
    // cores keep them busy, more would only add start-up time.
    let mut python_runner = runner.clone();
    if !settings.python_workers_given {
        python_runner.python_workers = crate::runner::cores().max(2);
    }
    let early_python = (python_runner.python_workers > 0).then(|| {
        let look = root.to_path_buf();
        let python_runner = python_runner.clone();
        tokio::spawn(async move {
            let found = tokio::task::spawn_blocking(move || has_python_file(&look))
                .await
                .unwrap_or(false);
            match found {
                true => Some(
                    Runners::start(&python_runner, Warmth::Forked)
                        .await
                        .map(Arc::new),
                ),
                false => None,
            }
        })
    });
    let typed = settings.typed_root.clone();
    let scan_root = root.to_path_buf();
    let listing = tokio::task::spawn_blocking(move || tree::scan(&scan_root)).await?;

    let Plan {
        jobs,
        skipped,
        unsafe_links,
        unreadable,
        ignored,
        unused_patterns,
    } = plan(
        listing,
        &IgnoreRules::new(&settings.ignore_path),
        &typed,
        root,
    );

    let options = RunOptions {
        profile: Profile::check(settings.allow_missing_port),
        max_file_size: settings.max_file_size,
        concurrency: settings.jobs.unwrap_or_else(default_concurrency),
        max_run_time: runner.max_run_time,
    };
    let tracker = Arc::new(progress::Tracker::default());
    let progress = progress::Progress::start(tracker.clone(), jobs.len());
    let has_python = jobs
        .iter()
        .any(|j| j.generator.kind == GeneratorKind::Python);
    let start_runners = async move {
        let mut python_runner = python_runner;
        let early = match early_python {
            Some(early) if has_python => early.await.unwrap_or_else(|e| {
                Some(Err(GeneratorError::new(
                    ErrorKind::Internal,
                    format!("starting the Python workers failed: {e}"),
                )))
            }),
            Some(early) => {
                // Not needed after all: let it finish starting, then stop it.
                tokio::spawn(async move {
                    if let Ok(Some(Ok(r))) = early.await {
                        r.shutdown().await;
                    }
                });
                None
            }
            None => None,
        };
        match early {
            Some(started) => started,
            None => {
                if !has_python {
                    python_runner.python_workers = 0;
                }
                Runners::start(&python_runner, Warmth::Forked)
                    .await
                    .map(Arc::new)
            }
        }
    };
    let checks = run::check_all(jobs, start_runners, options, tracker).await;
    progress.finish();
    Ok(CheckReport::new(
        typed,
        checks,
        skipped,
        unsafe_links,
        unreadable,
        ignored,
        unused_patterns,
        started.elapsed(),
    ))
}

/// What a check will run and list, once `--ignore-path` is applied to a scan.
struct Plan {
    jobs: Vec<Job>,
    skipped: Vec<Listed>,
    unsafe_links: Vec<Listed>,
    unreadable: Vec<Listed>,
    ignored: Vec<Ignored>,
    unused_patterns: Vec<String>,
}

/// Applies the ignore rules to everything a scan found (`typed`: the root as typed).
fn plan(listing: tree::Listing, rules: &IgnoreRules, typed: &str, root: &Path) -> Plan {
    let mut ignored = Vec::new();
    // True when `rel` is kept; otherwise records why it is left out.
    let mut keep = |rel: &str| -> bool {
        let file = display_path(typed, rel);
        match rules.matching(&file, rel, &root.join(rel)) {
            Some(pattern) => {
                ignored.push(Ignored {
                    path: rel.to_string(),
                    file,
                    pattern: pattern.to_string(),
                });
                false
            }
            None => true,
        }
    };
    let jobs: Vec<Job> = listing
        .generators
        .into_iter()
        .filter(|g| keep(&g.rel))
        .map(|g| Job {
            file: display_path(typed, &g.rel),
            generator: g,
        })
        .collect();
    let mut listed = |items: Vec<Skipped>| -> Vec<Listed> {
        items
            .into_iter()
            .filter(|s| keep(&s.rel))
            .map(|s| Listed {
                file: display_path(typed, &s.rel),
                path: s.rel,
                reason: s.reason,
            })
            .collect()
    };
    let skipped = listed(listing.skipped);
    let unsafe_links = listed(listing.unsafe_links);
    let unreadable = listed(listing.unreadable);
    ignored.sort_by(|a, b| tree::cmp_components(&a.path, &b.path));
    let unused_patterns = rules
        .patterns()
        .filter(|p| !ignored.iter().any(|i| i.pattern == *p))
        .map(str::to_string)
        .collect();
    Plan {
        jobs,
        skipped,
        unsafe_links,
        unreadable,
        ignored,
        unused_patterns,
    }
}

/// Whether the tree seems to hold a `.py` file: a quick look at directory entries
/// only (no `stat`), stopping at the first one, so that the Python workers can start
/// before the full scan is done. Only a hint: the scan decides.
fn has_python_file(root: &Path) -> bool {
    let mut dirs = vec![root.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > 100_000 {
                return false;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            if name.ends_with(".py") {
                return true;
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            }
        }
    }
    false
}

fn default_concurrency() -> usize {
    (crate::runner::cores() * 4).max(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skipped(rel: &str) -> Skipped {
        Skipped {
            rel: rel.into(),
            reason: "test".into(),
        }
    }

    #[test]
    fn an_unreadable_directory_fails_the_check_unless_ignored() {
        let listing = tree::Listing {
            unreadable: vec![skipped("secret"), skipped("wip/locked")],
            skipped: vec![skipped("README.md")],
            ..Default::default()
        };
        let p = plan(
            listing,
            &IgnoreRules::new(&["t/wip", "nothing"]),
            "t",
            Path::new("/r"),
        );
        assert_eq!(p.unreadable.len(), 1);
        assert_eq!(p.unreadable[0].file, "t/secret");
        assert_eq!(p.ignored.len(), 1);
        assert_eq!(p.ignored[0].pattern, "t/wip");
        assert_eq!(p.unused_patterns, ["nothing"]);
        let report = CheckReport::new(
            "t".into(),
            Vec::new(),
            p.skipped,
            p.unsafe_links,
            p.unreadable,
            p.ignored,
            p.unused_patterns,
            std::time::Duration::ZERO,
        );
        assert!(!report.ok);
        assert_eq!(report.summary.unreadable, 1);
        assert_eq!(report.summary.skipped, 1);
        let mut text = Vec::new();
        report.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("UNREADABLE t/secret: test\n"), "{text}");
        assert!(text.ends_with(": FAILED\n"), "{text}");
    }
}
