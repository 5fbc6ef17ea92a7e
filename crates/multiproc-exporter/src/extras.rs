//! What the sidecar serves besides the directory: the custom collectors' families
//! ([`crate::collectors`]), the writers' process metrics ([`crate::procstats`]) and the
//! metrics of the outputs ([`crate::outputs`]). A scrape gathers the collectors first (async,
//! bounded by their timeout), then [`Gathered::finish`] runs on the blocking thread with the
//! merged families: a family whose name (or any sample name) is already served is left
//! out and reported, never served twice.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashSet;

use exposition::{Format, MetricFamily, MetricType, Sample};

use crate::collectors::{CollectorResult, Collectors, Outcome};
use crate::merge::MergedFamily;
use crate::outputs::OutputStats;
use crate::procstats::ProcStats;

/// The extras of a sidecar (none by default).
#[derive(Default)]
pub struct Extras {
    /// Custom collectors.
    pub collectors: Option<Collectors>,
    /// Process metrics of the writers.
    pub procstats: Option<Arc<ProcStats>>,
    /// What the outputs did.
    output_stats: Arc<OutputStats>,
    /// Clashes logged already (logged again only when the set changes).
    clashes_logged: Mutex<BTreeSet<String>>,
}

impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extras")
            .field("collectors", &self.collectors.is_some())
            .field("procstats", &self.procstats.is_some())
            .finish()
    }
}

/// What the collectors gave for one scrape, and the process metrics being read.
#[derive(Debug, Default)]
pub struct Gathered {
    results: Vec<CollectorResult>,
    /// Reads `/proc` on its own thread while the directory is merged (200 writers cost
    /// about as much as the merge).
    procstats: Option<std::thread::JoinHandle<Vec<MetricFamily>>>,
}

impl Extras {
    /// Extras with these collectors and process metrics.
    pub fn new(collectors: Option<Collectors>, procstats: Option<ProcStats>) -> Extras {
        Extras {
            collectors,
            procstats: procstats.map(Arc::new),
            ..Extras::default()
        }
    }

    /// The counters the outputs update.
    pub fn output_stats(&self) -> Arc<OutputStats> {
        self.output_stats.clone()
    }

    /// Runs the collectors (concurrent scrapes share one collection).
    pub async fn gather(&self) -> Gathered {
        let results = match &self.collectors {
            Some(c) => c.collect().await,
            None => Vec::new(),
        };
        let procstats = self.procstats.clone().and_then(|p| {
            std::thread::Builder::new()
                .name("procstats".into())
                .spawn(move || p.families())
                .map_err(|e| tracing::warn!("process metrics skipped: no thread: {e}"))
                .ok()
        });
        Gathered { results, procstats }
    }

    /// Stops the collectors' workers.
    pub fn shutdown(&self) {
        if let Some(c) = &self.collectors {
            c.shutdown();
        }
    }
}

/// The names a family occupies in an exposition: its own and its samples'.
fn occupied(fam: &MetricFamily) -> impl Iterator<Item = &str> {
    std::iter::once(fam.name.as_str()).chain(fam.samples.iter().map(|s| s.name.as_str()))
}

impl Gathered {
    /// The extra families to serve after the merged ones: process metrics, collectors'
    /// families without clashes, and the own metrics about them.
    pub fn finish(self, merged: &[MergedFamily], extras: &Extras) -> Vec<MetricFamily> {
        // The merged names, borrowed and collected only when an extra family comes (a
        // large directory has tens of thousands of samples).
        let mut served: Option<FxHashSet<&str>> = None;
        let mut taken: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        let mut clashes: BTreeSet<String> = BTreeSet::new();
        let mut admit = |fam: MetricFamily, source: &str, out: &mut Vec<MetricFamily>| -> bool {
            let served = served.get_or_insert_with(|| {
                let mut names = FxHashSet::default();
                for f in merged {
                    names.insert(&*f.name);
                    let mut last: Option<&str> = None;
                    for s in &f.samples {
                        // Samples of a series share their name: skip the repeats.
                        if last != Some(&*s.name) {
                            names.insert(&*s.name);
                            last = Some(&s.name);
                        }
                    }
                }
                names
            });
            let clash = occupied(&fam)
                .find(|n| {
                    served.contains(*n)
                        || taken.contains(*n)
                        || n.starts_with("multiproc_exporter_")
                })
                .map(str::to_string);
            match clash {
                Some(n) => {
                    clashes.insert(format!("{source}: {} (clashes with {n})", fam.name));
                    false
                }
                None => {
                    taken.extend(occupied(&fam).map(str::to_string));
                    out.push(fam);
                    true
                }
            }
        };
        if let Some(h) = self.procstats {
            for fam in h.join().unwrap_or_default() {
                admit(fam, "process metrics", &mut out);
            }
        }
        let mut up = MetricFamily::new(
            "multiproc_exporter_collector_up",
            "1 when the collector's last collection succeeded, 0 when its families are left out.",
            MetricType::Gauge,
        );
        let mut left_out = MetricFamily::new(
            "multiproc_exporter_collector_clashes",
            "Families of the collector left out of this scrape: their names are served already.",
            MetricType::Gauge,
        );
        for r in &self.results {
            let labels = [("collector", r.name.as_str())];
            let mut dropped = 0usize;
            let ok = match r.outcome.as_ref() {
                Outcome::Families(fams) => {
                    for fam in fams {
                        if !admit(fam.clone(), &r.name, &mut out) {
                            dropped += 1;
                        }
                    }
                    1.0
                }
                Outcome::Failed { .. } => 0.0,
            };
            up.samples
                .push(Sample::new("multiproc_exporter_collector_up", &labels, ok));
            left_out.samples.push(Sample::new(
                "multiproc_exporter_collector_clashes",
                &labels,
                dropped as f64,
            ));
        }
        if !self.results.is_empty() {
            out.push(up);
            out.push(left_out);
        }
        out.extend(extras.output_stats.families());
        let mut logged = extras
            .clashes_logged
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *logged != clashes {
            for c in clashes.difference(&logged) {
                tracing::warn!("family left out, its name is served already: {c}");
            }
            *logged = clashes;
        }
        out
    }
}

/// Appends `extra` encoded in `format` to a body that holds other families (an
/// OpenMetrics body's `# EOF` moves to the end).
pub fn append_encoded(body: &mut String, extra: &[MetricFamily], format: &Format) {
    let om = matches!(format, Format::OpenMetrics(_));
    if om && body.ends_with("# EOF\n") {
        body.truncate(body.len() - "# EOF\n".len());
    }
    body.push_str(&exposition::encode(extra, format));
}
