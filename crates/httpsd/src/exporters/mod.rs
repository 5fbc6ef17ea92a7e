//! Exporters (`serve --exporters DIR`): a directory of collectors served as Prometheus
//! metrics at `P/metrics/<sub>` and listed as an HTTP SD target list at `P/exporters`.
//!
//! The directory is a [`Catalog`] of the exporter [`Flavor`] (the tree's ignore and
//! safety rules, kept fresh by the same watcher); runs go through the generators'
//! [`Cache`] machinery (single flight, `cache_time`, stale-while-revalidate); outputs
//! are parsed and validated by the `exposition` crate and re-encoded.
//!
//! - [`run`]: one exporter's run and validation, and the cache's [`ExporterSource`].
//! - [`python`]: `.py` exporters on workers with module affinity.
//! - [`merge`]: a path's outputs merged, with `httpsd_exporter_up`/`_duration_seconds`.
//! - [`memo`]: what a scrape reuses while its inputs stay the same (its plan, its body).
//! - [`sd`]: the `P/exporters` target list.
//! - [`board`]: per-exporter status for the admin page and `?debug=true`.

pub mod board;
pub mod memo;
pub mod merge;
pub mod python;
pub mod run;
pub mod sd;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::{Cache, CacheSettings, RunKey};
use crate::catalog::{Catalog, Snapshot};
use crate::error::PathError;
use crate::metrics::Metrics;
use crate::params::Params;
use crate::runner::RunnerSettings;
use crate::tree::{Flavor, GeneratorFile, SubPath, is_ignored_name};
use board::Board;
use memo::{ExporterResult, Plans, Scrape};
use run::{ExporterRunners, ExporterSource};

/// The exporter path of a file: its path under the directory without its extension
/// (`team/jenkins.py` is `team/jenkins`), as used in `P/metrics/<path>`.
pub fn exporter_path(rel: &str) -> &str {
    let (dir, name) = match rel.rsplit_once('/') {
        Some((d, n)) => (Some(d), n),
        None => (None, rel),
    };
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => &rel[..dir.map_or(0, |d| d.len() + 1) + stem.len()],
        _ => rel,
    }
}

/// The exporters of one directory.
pub struct Exporters {
    catalog: Arc<Catalog>,
    runners: Arc<ExporterRunners>,
    cache: Cache<ExporterSource>,
    board: Arc<Board>,
    /// What scrapes reuse while their inputs stay the same.
    plans: Plans,
    max_run_time: Duration,
    /// Modules whose worker was started ahead once (a start that fails is not tried
    /// again every rescan: the module's next scrape tries, and reports why).
    warmed: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Exporters {
    /// Scans `dir` (canonical) once; runs its exporters as `runner` says (its root is
    /// replaced by `dir`), cached per `cache`.
    pub async fn start(
        dir: &Path,
        runner: &RunnerSettings,
        cache: &CacheSettings,
        max_file_size: u64,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Exporters> {
        let root = dir.to_path_buf();
        let m = metrics.clone();
        let catalog = Arc::new(
            tokio::task::spawn_blocking(move || {
                Catalog::with_flavor(&root, Flavor::Exporters, max_file_size, m)
            })
            .await?,
        );
        let settings = RunnerSettings {
            root: dir.to_path_buf(),
            ..runner.clone()
        };
        let runners = Arc::new(ExporterRunners::new(&settings, max_file_size));
        let board = Arc::new(Board::default());
        let source = ExporterSource {
            runners: runners.clone(),
            board: board.clone(),
        };
        let cache = Cache::new(source, cache.policy.clone(), metrics, "exporter");
        Ok(Exporters {
            catalog,
            runners,
            cache,
            board,
            plans: Plans::default(),
            max_run_time: runner.max_run_time,
            warmed: Default::default(),
        })
    }

    /// The catalog of the directory (for the watcher and the admin page).
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The per-exporter status board.
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// The cache of exporter results.
    pub fn cache(&self) -> &Cache<ExporterSource> {
        &self.cache
    }

    /// `--max-run-time`.
    pub fn max_run_time(&self) -> Duration {
        self.max_run_time
    }

    /// Starts the cache's refresh and sweep passes.
    pub fn start_cache(&self) -> tokio::task::JoinHandle<()> {
        self.cache.spawn_maintenance()
    }

    /// The exporters `sub` selects: every one below a directory, or the files whose
    /// exporter path is `sub` (`a` selects `a.py` and `a.prom`).
    pub fn select(snapshot: &Snapshot, sub: &SubPath) -> Result<Vec<GeneratorFile>, PathError> {
        if sub.components().iter().any(|c| is_ignored_name(c)) {
            return Err(PathError::NotFound(sub.as_rel()));
        }
        let rel = sub.as_rel();
        let listing = &snapshot.listing;
        let under = |path: &str, dir: &str| {
            dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
        };
        if let Some(bad) =
            (listing.unreadable.iter()).find(|u| under(&u.rel, &rel) || under(&rel, &u.rel))
        {
            return Err(PathError::Unreadable {
                dir: bad.rel.clone(),
                reason: bad.reason.clone(),
            });
        }
        let is_dir = listing.dirs.contains(&rel);
        let files: Vec<GeneratorFile> = (listing.generators.iter())
            .filter(|g| {
                if is_dir {
                    under(&g.rel, &rel)
                } else {
                    exporter_path(&g.rel) == rel
                }
            })
            .cloned()
            .collect();
        if files.is_empty() && !is_dir {
            return Err(PathError::NotFound(rel));
        }
        Ok(files)
    }

    /// Runs (or takes from the cache) every exporter of `sub`, each waited for at most
    /// `deadline` (a scrape's own timeout less a margin); one past it is failed for this
    /// scrape while its run goes on for the next. Conflicting exporters are left out.
    pub async fn scrape(
        &self,
        sub: &SubPath,
        params: &Params,
        deadline: Option<Duration>,
    ) -> Result<Scrape, PathError> {
        let snapshot = self.catalog.snapshot();
        let plan = (self.plans).get(&snapshot, sub.as_rel(), params, || {
            Self::select(&snapshot, sub)
        })?;
        let lookups = plan.keys.iter().map(|key| self.lookup(key, deadline));
        let (mut results, durations): (Vec<_>, Vec<_>) =
            futures::future::join_all(lookups).await.into_iter().unzip();
        let merged = plan.merged(&results);
        merged.apply(&mut results);
        for (file, result) in plan.files.iter().zip(&results) {
            if let Err(e) = result {
                self.board.record_error(&file.rel, &e.message);
            }
        }
        Ok(Scrape {
            plan,
            merged,
            results,
            durations,
        })
    }

    async fn lookup(&self, key: &RunKey, deadline: Option<Duration>) -> (ExporterResult, Duration) {
        let started = Instant::now();
        let lookup = self.cache.get(key);
        let result = match deadline {
            Some(limit) => match tokio::time::timeout(limit, lookup).await {
                Ok(l) => l.result,
                Err(_) => Err(crate::error::GeneratorError::new(
                    crate::error::ErrorKind::Timeout,
                    format!(
                        "{}: no result within {:.3}s (the scrape's timeout less a margin); the run goes on and its result will answer later scrapes",
                        key.generator.rel,
                        limit.as_secs_f64()
                    ),
                )),
            },
            None => lookup.await.result,
        };
        (result, started.elapsed())
    }

    /// Forgets what belongs to exporters that are gone (their workers, their status)
    /// and starts the workers of new `.py` exporters, so that no scrape waits for an
    /// interpreter to start.
    pub fn prune(&self) {
        let snapshot = self.catalog.snapshot();
        let present: std::collections::HashSet<String> = (snapshot.listing.generators.iter())
            .flat_map(|g| [g.rel.clone(), g.abs.to_string_lossy().into_owned()])
            .collect();
        self.board.retain(|rel| present.contains(rel));
        let python = self.runners.python();
        python.retain(|module| present.contains(module));
        let mut warmed = self.warmed.lock().unwrap_or_else(|e| e.into_inner());
        warmed.retain(|module| present.contains(module));
        for g in snapshot.listing.generators.iter() {
            let module = g.abs.to_string_lossy().into_owned();
            if g.kind == crate::tree::GeneratorKind::Python && warmed.insert(module.clone()) {
                let runners = self.runners.clone();
                tokio::spawn(async move { runners.python().warm(&module).await });
            }
        }
    }

    /// Kills the exporters' Python workers.
    pub fn shutdown(&self) {
        self.runners.python().shutdown();
    }
}

/// How long a scrape may wait for its exporters, from Prometheus's
/// `X-Prometheus-Scrape-Timeout-Seconds`: the timeout less 10% (at least 0.25 s, at
/// most half of it), so a slow exporter is `up 0` before Prometheus gives up on the
/// whole scrape; never more than `max_run_time`.
pub fn scrape_deadline(header: Option<&str>, max_run_time: Duration) -> Option<Duration> {
    let t: f64 = header?.trim().parse().ok()?;
    if !t.is_finite() || t <= 0.0 {
        return None;
    }
    let margin = (t * 0.1).max(0.25).min(t / 2.0);
    Some(Duration::from_secs_f64(t - margin).min(max_run_time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporter_paths_drop_the_extension() {
        assert_eq!(exporter_path("a.py"), "a");
        assert_eq!(exporter_path("team/jenkins.prom"), "team/jenkins");
        assert_eq!(exporter_path("team/probe"), "team/probe");
        assert_eq!(exporter_path("x.d/probe"), "x.d/probe");
        assert_eq!(exporter_path("a.tar.sh"), "a.tar");
    }

    #[test]
    fn the_deadline_keeps_a_margin() {
        let max = Duration::from_secs(30);
        assert_eq!(
            scrape_deadline(Some("10"), max),
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            scrape_deadline(Some("1"), max),
            Some(Duration::from_millis(750))
        );
        assert_eq!(
            scrape_deadline(Some("0.2"), max),
            Some(Duration::from_millis(100))
        );
        assert_eq!(scrape_deadline(Some("100"), max), Some(max));
        assert_eq!(scrape_deadline(Some("nope"), max), None);
        assert_eq!(scrape_deadline(None, max), None);
    }
}
