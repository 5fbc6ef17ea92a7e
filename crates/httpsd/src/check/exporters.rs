//! `check --exporters DIR`: runs every exporter of DIR once (no parameters), lists
//! every problem of its output (each invalid line with its reason, not just the
//! first) and the families two exporters of one path both define; PASS/FAIL per
//! exporter, in the text report after the generators', in the JSON report as
//! `exporters`.

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;

use crate::exporters::exporter_path;
use crate::exporters::merge::{Outcome, exclude_conflicts};
use crate::exporters::run::{ExporterOutput, ExporterRunners};
use crate::params::Params;
use crate::runner::RunnerSettings;
use crate::tree::{Flavor, scan_with};

/// One exporter's check.
#[derive(Debug, Clone, Serialize)]
pub struct ExporterCheck {
    /// Its path under DIR.
    pub exporter: String,
    /// True when its output is valid.
    pub ok: bool,
    /// Series in its output, when valid.
    pub series: Option<usize>,
    /// Every problem found.
    pub problems: Vec<String>,
}

/// Every exporter of a directory, checked.
#[derive(Debug, Clone, Serialize)]
pub struct ExportersReport {
    /// True when every exporter passes.
    pub ok: bool,
    /// The exporters, in path order.
    pub exporters: Vec<ExporterCheck>,
    /// Files under DIR that are not exporters.
    pub skipped: Vec<String>,
}

impl ExportersReport {
    /// Writes the text lines: PASS/FAIL per exporter, its problems, a summary.
    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        for e in &self.exporters {
            match e.series {
                Some(n) if e.ok => writeln!(out, "PASS exporter {} ({n} series)", e.exporter)?,
                _ => writeln!(out, "FAIL exporter {}", e.exporter)?,
            }
            for p in &e.problems {
                writeln!(out, "  {}: {p}", e.exporter)?;
            }
        }
        for s in &self.skipped {
            writeln!(out, "SKIP exporter {s}")?;
        }
        let failed = self.exporters.iter().filter(|e| !e.ok).count();
        writeln!(
            out,
            "exporters: {} passed, {failed} failed: {}",
            self.exporters.len() - failed,
            if self.ok { "OK" } else { "FAILED" }
        )
    }
}

/// Runs and validates every exporter of `dir` (canonical).
pub async fn check_exporters(
    dir: &Path,
    runner: &RunnerSettings,
    max_file_size: u64,
) -> ExportersReport {
    let scan_dir = dir.to_path_buf();
    let listing = tokio::task::spawn_blocking(move || scan_with(&scan_dir, Flavor::Exporters))
        .await
        .unwrap_or_default();
    let settings = RunnerSettings {
        root: dir.to_path_buf(),
        ..runner.clone()
    };
    let runners = ExporterRunners::new(&settings, max_file_size);
    let params = Params::empty();
    let runs = listing.generators.iter().map(|f| async {
        let started = std::time::Instant::now();
        let result = runners.output(f, &params).await;
        let problems: Vec<String> = match &result {
            Err(e) => vec![e.message.clone()],
            Ok((text, format)) => match std::str::from_utf8(text) {
                Ok(s) => exposition::validate(s, *format)
                    .iter()
                    .map(|e| e.to_string())
                    .collect(),
                Err(_) => vec!["the output is not UTF-8".into()],
            },
        };
        let output = match (&result, problems.is_empty()) {
            (Ok((text, format)), true) => {
                crate::exporters::run::parse_output(&f.rel, text, *format)
            }
            _ => Err(crate::error::GeneratorError::new(
                crate::error::ErrorKind::Invalid,
                "invalid",
            )),
        };
        (
            Outcome {
                file: f.clone(),
                result: output.map(std::sync::Arc::new),
                duration: started.elapsed(),
            },
            problems,
        )
    });
    let mut done = futures::future::join_all(runs).await;
    runners.python().close().await;
    // Conflicts between the exporters of one path (`a.py` and `a.prom`).
    let mut checks = Vec::new();
    let mut i = 0;
    while i < done.len() {
        let path = exporter_path(&done[i].0.file.rel).to_string();
        let mut j = i;
        while j < done.len() && exporter_path(&done[j].0.file.rel) == path {
            j += 1;
        }
        let mut group: Vec<Outcome> = done[i..j].iter().map(|(o, _)| o.clone()).collect();
        exclude_conflicts(&mut group);
        for (k, o) in group.into_iter().enumerate() {
            let problems = &mut done[i + k].1;
            if let Err(e) = &o.result
                && problems.is_empty()
            {
                problems.push(e.message.clone());
            }
            let series = o
                .result
                .as_ref()
                .ok()
                .map(|r: &std::sync::Arc<ExporterOutput>| r.series);
            checks.push(ExporterCheck {
                exporter: o.file.rel.clone(),
                ok: problems.is_empty(),
                series,
                problems: std::mem::take(problems),
            });
        }
        i = j;
    }
    ExportersReport {
        ok: checks.iter().all(|c| c.ok) && listing.unreadable.is_empty(),
        exporters: checks,
        skipped: listing
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.rel, s.reason))
            .collect(),
    }
}
