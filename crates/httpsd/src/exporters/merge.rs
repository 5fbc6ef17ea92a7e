//! Merges the outputs of a path's exporters into one exposition: each exporter's
//! families in path order, an exporter whose family (or sample name) another exporter
//! of the path already defined is left out as failed, and every exporter gets
//! `httpsd_exporter_up` and `httpsd_exporter_duration_seconds`, as node_exporter's
//! `node_scrape_collector_success` and script_exporter do.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use exposition::{MetricFamily, MetricType, Sample};

use super::exporter_path;
use super::run::ExporterOutput;
use crate::error::{ErrorKind, GeneratorError};
use crate::tree::GeneratorFile;

/// The prefix of the families httpsd adds; an exporter may not define them.
pub const OWN_PREFIX: &str = "httpsd_exporter_";

/// One exporter's part of a scrape.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The exporter's file.
    pub file: GeneratorFile,
    /// Its validated output, or why there is none.
    pub result: Result<Arc<ExporterOutput>, GeneratorError>,
    /// Time spent obtaining it in this scrape.
    pub duration: Duration,
}

/// Leaves out (as failed) every exporter that defines a family or sample name an
/// earlier exporter of the path defined, or one of httpsd's own.
pub fn exclude_conflicts(outcomes: &mut [Outcome]) {
    let mut owners: HashMap<String, String> = HashMap::new();
    for o in outcomes.iter_mut() {
        let Ok(out) = &o.result else { continue };
        let mut conflict = None;
        for f in &out.families {
            let names =
                std::iter::once(f.name.as_str()).chain(f.samples.iter().map(|s| s.name.as_str()));
            for name in names {
                if name.starts_with(OWN_PREFIX) {
                    conflict = Some(format!("{name} is a name httpsd reserves ({OWN_PREFIX}*)"));
                } else if let Some(owner) = owners.get(name) {
                    conflict = Some(format!("{name} is already defined by exporter {owner}"));
                }
                if conflict.is_some() {
                    break;
                }
            }
            if conflict.is_some() {
                break;
            }
        }
        if let Some(why) = conflict {
            o.result = Err(GeneratorError::new(
                ErrorKind::Invalid,
                format!("{}: {why}; its metrics are left out", o.file.rel),
            ));
            continue;
        }
        for f in &out.families {
            owners.insert(f.name.clone(), o.file.rel.clone());
            for s in &f.samples {
                owners.insert(s.name.clone(), o.file.rel.clone());
            }
        }
    }
}

/// httpsd's own families of a scrape, from each exporter's file (its path under the
/// directory), success and time: `httpsd_exporter_up` and
/// `httpsd_exporter_duration_seconds`, labelled with `exporter` (the exporter path, the
/// value of the `exporter` label of its `P/exporters` target) and `file` (which keeps
/// `a.py` and `a.prom`, both exporter `a`, apart).
pub fn own_families<'a>(
    exporters: impl IntoIterator<Item = (&'a str, bool, Duration)>,
) -> [MetricFamily; 2] {
    let mut up = MetricFamily::new(
        "httpsd_exporter_up",
        "Whether the exporter's last scrape succeeded (1) or failed (0).",
        MetricType::Gauge,
    );
    let mut duration = MetricFamily::new(
        "httpsd_exporter_duration_seconds",
        "Time the exporter took in this scrape (near 0 when served from the cache).",
        MetricType::Gauge,
    );
    for (rel, ok, took) in exporters {
        let labels = [("exporter", exporter_path(rel)), ("file", rel)];
        up.samples.push(Sample::new(
            "httpsd_exporter_up",
            &labels,
            if ok { 1.0 } else { 0.0 },
        ));
        duration.samples.push(Sample::new(
            "httpsd_exporter_duration_seconds",
            &labels,
            took.as_secs_f64(),
        ));
    }
    [up, duration]
}
