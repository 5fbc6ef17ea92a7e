//! The outcome of a `check` run and its two renderings: text for people (one PASS/FAIL
//! line per generator, every problem, a summary) and JSON for machines (schema in
//! `docs/check.md`).

use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;

use crate::error::GeneratorError;
use crate::tree::GeneratorKind;
use crate::validate::{Problem, Severity};

/// Version of the JSON document; bumped on incompatible changes.
pub const JSON_FORMAT_VERSION: u32 = 1;

/// PASS or FAIL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Ran and produced output Prometheus accepts, with no error under check's rules.
    Pass,
    /// Failed to run, or produced output with at least one error.
    Fail,
}

/// The check of one generator.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratorCheck {
    /// Path relative to the root.
    pub path: String,
    /// Path as shown to the user: the root as typed joined with `path`.
    pub file: String,
    /// Kind of generator.
    pub kind: GeneratorKind,
    /// PASS or FAIL.
    pub status: Status,
    /// Number of target strings produced (0 when it failed to run).
    pub targets: usize,
    /// Number of target groups produced.
    pub groups: usize,
    /// Time taken to read or run it and validate the output, in seconds.
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
    /// Why it could not produce output at all (exception, timeout, parse error...).
    pub error: Option<GeneratorError>,
    /// Every problem in its output (errors and warnings), in group order.
    pub problems: Vec<Problem>,
}

impl GeneratorCheck {
    /// Sets the status from the error and the problems.
    pub fn finish(mut self) -> GeneratorCheck {
        let failed =
            self.error.is_some() || self.problems.iter().any(|p| p.severity == Severity::Error);
        self.status = if failed { Status::Fail } else { Status::Pass };
        self
    }

    fn count(&self, severity: Severity) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == severity)
            .count()
    }
}

/// A file or directory that is listed but not checked, with why.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// Path relative to the root.
    pub path: String,
    /// Path as shown to the user.
    pub file: String,
    /// Why it is listed here.
    pub reason: String,
}

/// A file left out by `--ignore-path`.
#[derive(Debug, Clone, Serialize)]
pub struct Ignored {
    /// Path relative to the root.
    pub path: String,
    /// Path as shown to the user.
    pub file: String,
    /// The pattern that matched, as typed.
    pub pattern: String,
}

/// The counts printed at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Generators checked.
    pub generators: usize,
    /// Generators that passed.
    pub passed: usize,
    /// Generators that failed.
    pub failed: usize,
    /// Files under the root that are not generators.
    pub skipped: usize,
    /// Files left out by `--ignore-path`.
    pub ignored: usize,
    /// Symlinks that leave the root (never followed).
    pub unsafe_links: usize,
    /// Directories that could not be read (a failure: their paths would fail).
    pub unreadable: usize,
    /// Targets produced by all generators.
    pub targets: usize,
    /// Error-level problems over all generators (a failed run counts as one).
    pub errors: usize,
    /// Warnings over all generators.
    pub warnings: usize,
    /// Wall-clock time of the whole check, in seconds.
    #[serde(rename = "duration_seconds", serialize_with = "seconds")]
    pub duration: Duration,
}

/// Everything a `check` run found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Version of this document's schema.
    pub version: u32,
    /// The root directory as typed.
    pub root: String,
    /// True when the exit code is 0.
    pub ok: bool,
    /// The counts.
    pub summary: Summary,
    /// Every generator checked, in path order.
    pub generators: Vec<GeneratorCheck>,
    /// Files that are not generators.
    pub skipped: Vec<Listed>,
    /// Symlinks that leave the root.
    pub unsafe_links: Vec<Listed>,
    /// Directories that could not be read.
    pub unreadable: Vec<Listed>,
    /// Files left out by `--ignore-path`.
    pub ignored: Vec<Ignored>,
    /// `--ignore-path` patterns that matched nothing (probably a typo).
    pub unused_ignore_patterns: Vec<String>,
}

impl CheckReport {
    /// Builds the report and its summary.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        root: String,
        generators: Vec<GeneratorCheck>,
        skipped: Vec<Listed>,
        unsafe_links: Vec<Listed>,
        unreadable: Vec<Listed>,
        ignored: Vec<Ignored>,
        unused_ignore_patterns: Vec<String>,
        duration: Duration,
    ) -> CheckReport {
        let passed = generators
            .iter()
            .filter(|g| g.status == Status::Pass)
            .count();
        let summary = Summary {
            generators: generators.len(),
            passed,
            failed: generators.len() - passed,
            skipped: skipped.len(),
            ignored: ignored.len(),
            unsafe_links: unsafe_links.len(),
            unreadable: unreadable.len(),
            targets: generators.iter().map(|g| g.targets).sum(),
            errors: generators
                .iter()
                .map(|g| g.count(Severity::Error) + usize::from(g.error.is_some()))
                .sum(),
            warnings: generators.iter().map(|g| g.count(Severity::Warning)).sum(),
            duration,
        };
        CheckReport {
            version: JSON_FORMAT_VERSION,
            root,
            ok: summary.failed == 0 && summary.unreadable == 0,
            summary,
            generators,
            skipped,
            unsafe_links,
            unreadable,
            ignored,
            unused_ignore_patterns,
        }
    }

    /// Writes the JSON document (one object, pretty-printed, trailing newline).
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        writeln!(out)
    }

    /// Writes the human-readable report.
    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        for g in &self.generators {
            let status = match g.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
            };
            writeln!(
                out,
                "{status} run generator {}, took {:.6}s, generated {} targets.",
                g.file,
                g.duration.as_secs_f64(),
                g.targets
            )?;
            if let Some(e) = &g.error {
                let kind = serde_json::to_value(e.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                writeln!(out, "  {}: error[{kind}]: {}", g.file, e.message)?;
                if let Some(tb) = &e.traceback {
                    for line in tb.trim_end().lines() {
                        writeln!(out, "    | {line}")?;
                    }
                }
            }
            for p in &g.problems {
                let severity = match p.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                };
                let rule = serde_json::to_value(p.rule)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                match p.group {
                    Some(i) => writeln!(
                        out,
                        "  {}: group {i}: {severity}[{rule}]: {}",
                        g.file, p.message
                    )?,
                    None => writeln!(out, "  {}: {severity}[{rule}]: {}", g.file, p.message)?,
                }
            }
        }
        for s in &self.skipped {
            writeln!(out, "SKIP {}: {}", s.file, s.reason)?;
        }
        for s in &self.unsafe_links {
            writeln!(out, "UNSAFE {}: {}", s.file, s.reason)?;
        }
        for s in &self.unreadable {
            writeln!(out, "UNREADABLE {}: {}", s.file, s.reason)?;
        }
        for i in &self.ignored {
            writeln!(
                out,
                "IGNORED {} (matches --ignore-path {})",
                i.file, i.pattern
            )?;
        }
        for p in &self.unused_ignore_patterns {
            writeln!(out, "NOTE --ignore-path {p} matched no file")?;
        }
        let s = &self.summary;
        let mut line = format!(
            "Summary: {} generators, {} passed, {} failed, {} skipped, {} targets",
            s.generators, s.passed, s.failed, s.skipped, s.targets
        );
        for (n, one, many) in [
            (s.warnings, "warning", "warnings"),
            (s.ignored, "ignored", "ignored"),
            (s.unsafe_links, "unsafe link", "unsafe links"),
            (
                s.unreadable,
                "unreadable directory",
                "unreadable directories",
            ),
        ] {
            if n > 0 {
                line.push_str(&format!(", {n} {}", if n == 1 { one } else { many }));
            }
        }
        writeln!(
            out,
            "{line} in {:.3}s: {}",
            s.duration.as_secs_f64(),
            if self.ok { "OK" } else { "FAILED" }
        )
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    // Microsecond resolution keeps the document short and stable.
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e6)
}
