//! httpsd's own metrics, with the original's names, types and labels where they
//! apply. Label values are bounded: `path` is only ever a path that exists in the
//! tree (unknown paths share one value), and `generator` only a real generator.

use std::sync::Arc;
use std::time::Duration;

use exposition::{Escaping, Format};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::error::GeneratorError;
use crate::validate::GeneratorOutput;

/// The `path` label value used for every request whose path does not exist.
pub const UNKNOWN_PATH: &str = "__unknown__";

/// Labels of `httpsd_path_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathRequestLabels {
    /// Sub-path below `targets/` (`""` for the root).
    pub path: String,
    /// `success`, `fail`, `not_found` or `bad_request`.
    pub status: String,
    /// First component of the path.
    pub l1_dir: String,
    /// Second component of the path.
    pub l2_dir: String,
}

/// A `path` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    /// Sub-path below `targets/`.
    pub path: String,
}

/// A `generator` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GeneratorLabel {
    /// Generator path relative to the root.
    pub generator: String,
}

/// `generator` and `status` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GeneratorStatusLabels {
    /// Generator path relative to the root.
    pub generator: String,
    /// `success` or `fail`.
    pub status: String,
}

/// `generator` and `result` labels (cache lookups).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GeneratorResultLabels {
    /// Generator path relative to the root.
    pub generator: String,
    /// `hit`, `stale`, `miss` or `cached_failure`.
    pub result: String,
}

/// Labels of `httpsd_cache_refreshes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    /// Generator path relative to the root.
    pub generator: String,
    /// `stale` (a request found the result stale) or `proactive` (refresh pass).
    pub trigger: String,
    /// `success` or `fail`.
    pub status: String,
}

/// A `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why (`idle`, `capacity`).
    pub reason: String,
}

/// A `name` label (the 1.x garbage-collection metrics).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabel {
    /// The `name` cache option.
    pub name: String,
}

/// The cache's metrics (see `docs/cache.md`).
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics {
    /// Lookups by generator and result.
    pub lookups: Family<GeneratorResultLabels, Counter>,
    /// Background refreshes by generator, trigger and status.
    pub refreshes: Family<RefreshLabels, Counter>,
    /// Evicted entries by reason.
    pub evictions: Family<ReasonLabel, Counter>,
    /// Current number of entries.
    pub entries: Gauge,
    /// Callers that stopped waiting at the timeout, by generator.
    pub timeouts: Family<GeneratorLabel, Counter>,
    /// Runs under way, by generator.
    pub in_flight: Family<GeneratorLabel, Gauge>,
    /// 1.x: entries removed by garbage collection.
    pub gc_collected: Family<NameLabel, Counter>,
    /// 1.x: entries in the cache.
    pub gc_cache_count: Family<NameLabel, Gauge>,
}

impl CacheMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "httpsd_cache_lookups",
            "Cache lookups of dynamic generator results, by result (hit, stale, miss, cached_failure)",
            self.lookups.clone(),
        );
        registry.register(
            "httpsd_cache_refreshes",
            "Background refreshes of cached results, by trigger (stale, proactive) and status (success, fail)",
            self.refreshes.clone(),
        );
        registry.register(
            "httpsd_cache_evictions",
            "Cache entries evicted, by reason (idle, capacity)",
            self.evictions.clone(),
        );
        registry.register(
            "httpsd_cache_entries",
            "Current number of cache entries (generator, parameters)",
            self.entries.clone(),
        );
        registry.register(
            "httpsd_generator_timeouts",
            "Requests that stopped waiting for a generator run at the timeout (the run goes on)",
            self.timeouts.clone(),
        );
        registry.register(
            "httpsd_generator_runs_in_flight",
            "Generator runs under way",
            self.in_flight.clone(),
        );
        registry.register(
            "httpsd_garbage_collection_collected_items",
            "Cache entries removed by garbage collection (1.x name; see httpsd_cache_evictions_total)",
            self.gc_collected.clone(),
        );
        registry.register(
            "httpsd_garbage_collection_cache_count",
            "Cache entries (1.x name; see httpsd_cache_entries)",
            self.gc_cache_count.clone(),
        );
    }

    /// Counts a lookup.
    pub fn lookup(&self, generator: &str, result: &str) {
        self.lookups
            .get_or_create(&GeneratorResultLabels {
                generator: generator.to_string(),
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts a finished background refresh.
    pub fn refresh(&self, generator: &str, trigger: &str, status: &str) {
        self.refreshes
            .get_or_create(&RefreshLabels {
                generator: generator.to_string(),
                trigger: trigger.to_string(),
                status: status.to_string(),
            })
            .inc();
    }
}

/// Every metric httpsd exposes, plus the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    /// Requests per path and outcome.
    pub path_requests: Family<PathRequestLabels, Counter>,
    /// Request handling time per path.
    pub path_duration: Family<PathLabel, Histogram>,
    /// Targets in the last successful response per path.
    pub path_last_targets: Family<PathLabel, Gauge>,
    /// Generator runs (dynamic) and loads (static) by outcome.
    pub generator_requests: Family<GeneratorStatusLabels, Counter>,
    /// Targets produced by each generator's last successful run.
    pub generator_last_targets: Family<GeneratorLabel, Gauge>,
    /// Duration of generator runs.
    pub generator_duration: Family<GeneratorLabel, Histogram>,
    /// The cache's metrics.
    pub cache: CacheMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        registry.register(
            "httpsd_version",
            "The version of httpsd",
            Info::new(vec![(
                "version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )]),
        );
        let path_requests = Family::<PathRequestLabels, Counter>::default();
        registry.register(
            "httpsd_path_requests",
            "The total count of a path being requested, by status (success, fail, not_found, bad_request)",
            path_requests.clone(),
        );
        let path_duration = Family::<PathLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
            ])
        });
        registry.register(
            "httpsd_target_path_request_duration_seconds",
            "The time spent answering a target path request",
            path_duration.clone(),
        );
        let path_last_targets = Family::<PathLabel, Gauge>::default();
        registry.register(
            "httpsd_path_last_generated_targets",
            "Number of targets in the last successful response of a path",
            path_last_targets.clone(),
        );
        let generator_requests = Family::<GeneratorStatusLabels, Counter>::default();
        registry.register(
            "httpsd_generator_requests",
            "The total count of generator runs (dynamic) or loads (static), by status (success, fail)",
            generator_requests.clone(),
        );
        let generator_last_targets = Family::<GeneratorLabel, Gauge>::default();
        registry.register(
            "httpsd_generator_last_generated_targets",
            "Number of targets of a generator's last successful run",
            generator_last_targets.clone(),
        );
        let generator_duration = Family::<GeneratorLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.5, 1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0, 120.0, 240.0])
        });
        registry.register(
            "httpsd_generator_run_duration_seconds",
            "The time a generator run took",
            generator_duration.clone(),
        );
        let cache = CacheMetrics::default();
        cache.register(&mut registry);
        registry.register_collector(Box::new(ProcessCollector));
        Metrics {
            registry,
            path_requests,
            path_duration,
            path_last_targets,
            generator_requests,
            generator_last_targets,
            generator_duration,
            cache,
        }
    }

    /// Mutable access to the registry, for other components to register their metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Encodes every metric in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Every metric in the scraper's format. `prometheus-client` writes OpenMetrics only;
    /// the exposition crate reads that back and writes text 0.0.4 or OpenMetrics byte
    /// for byte as Python's prometheus_client would, so scrapers that expect the
    /// original's text format (Telegraf, older agents, scripts) get it.
    pub fn render(&self, format: &Format) -> Result<String, exposition::ParseError> {
        let openmetrics = self.encode();
        let families = exposition::parse(&openmetrics, Format::OpenMetrics(Escaping::Underscores))?;
        Ok(exposition::encode(&families, format))
    }

    /// Records a path request. `path` must be a known path or [`UNKNOWN_PATH`].
    pub fn observe_path_request(
        &self,
        path: &str,
        status: &str,
        duration: Duration,
        targets: Option<usize>,
    ) {
        let mut parts = path.split('/').filter(|_| path != UNKNOWN_PATH);
        let l1 = parts.next().unwrap_or("").to_string();
        let l2 = parts.next().unwrap_or("").to_string();
        self.path_requests
            .get_or_create(&PathRequestLabels {
                path: path.to_string(),
                status: status.to_string(),
                l1_dir: l1,
                l2_dir: l2,
            })
            .inc();
        let label = PathLabel {
            path: path.to_string(),
        };
        self.path_duration
            .get_or_create(&label)
            .observe(duration.as_secs_f64());
        if let Some(n) = targets {
            self.path_last_targets
                .get_or_create(&label)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Records a dynamic generator run.
    pub fn observe_generator_run(
        &self,
        generator: &str,
        result: &Result<Arc<GeneratorOutput>, GeneratorError>,
        duration: Duration,
    ) {
        self.generator_duration
            .get_or_create(&GeneratorLabel {
                generator: generator.to_string(),
            })
            .observe(duration.as_secs_f64());
        self.observe_static_load(generator, result);
    }

    /// Records a static file load (or the outcome part of a run).
    pub fn observe_static_load(
        &self,
        generator: &str,
        result: &Result<Arc<GeneratorOutput>, GeneratorError>,
    ) {
        let status = if result.is_ok() { "success" } else { "fail" };
        self.generator_requests
            .get_or_create(&GeneratorStatusLabels {
                generator: generator.to_string(),
                status: status.to_string(),
            })
            .inc();
        if let Ok(out) = result {
            self.generator_last_targets
                .get_or_create(&GeneratorLabel {
                    generator: generator.to_string(),
                })
                .set(i64::try_from(out.target_count).unwrap_or(i64::MAX));
        }
    }
}

/// Standard `process_*` metrics read from `/proc/self` on each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = read_proc_self() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(p.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                p.rss_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                p.vsize_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds",
                p.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                p.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                p.max_fds,
            ),
        ] {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

struct ProcStats {
    cpu_seconds: f64,
    rss_bytes: f64,
    vsize_bytes: f64,
    start_time_seconds: f64,
    open_fds: f64,
    max_fds: f64,
}

fn read_proc_self() -> Option<ProcStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok());
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096.0, |t| t as f64);
    // Indices are field numbers from proc(5) minus 3.
    let utime = num(11)?;
    let stime = num(12)?;
    let starttime = num(19)?;
    let vsize = num(20)?;
    let rss = num(21)?;
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    })?;
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64;
    let max_fds = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(0.0, |(soft, _)| soft as f64);
    Some(ProcStats {
        cpu_seconds: (utime + stime) / ticks,
        rss_bytes: rss * page,
        vsize_bytes: vsize,
        start_time_seconds: boot + starttime / ticks,
        open_fds,
        max_fds,
    })
}

/// An `operation` label (Redis mode).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    /// `hit`, `stale`, `miss`, `expired`, or a Redis operation name.
    pub operation: String,
}

/// A `status` label (Redis mode queue gauge).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueStatusLabel {
    /// `pending` or `processing`.
    pub status: String,
}

/// `worker_id` and `status` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerStatusLabels {
    /// The worker's id.
    pub worker_id: String,
    /// `success`, `error` or `cache_error`.
    pub status: String,
}

/// A `worker_id` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabel {
    /// The worker's id.
    pub worker_id: String,
}

/// Metrics of the Redis scale-out mode (`server-only` and `worker-only`), with the
/// original's names plus re-queued jobs, Redis errors and Redis reachability.
#[derive(Clone, Debug, Default)]
pub struct RedisMetrics {
    /// Server lookups by outcome (`hit`, `stale`, `miss`, `expired`).
    pub cache_operations: Family<OperationLabel, Counter>,
    /// Jobs queued (`pending`) and taken by a worker (`processing`).
    pub queue_jobs: Family<QueueStatusLabel, Gauge>,
    /// Jobs finished by each worker, by outcome.
    pub worker_jobs: Family<WorkerStatusLabels, Counter>,
    /// Worker loops started.
    pub worker_started: Family<WorkerLabel, Counter>,
    /// Jobs recovered from dead or stuck workers.
    pub stale_jobs_cleaned: Counter,
    /// Jobs put back on the queue (recovered, or handed back at shutdown).
    pub jobs_requeued: Counter,
    /// Background jobs finished successfully.
    pub finished_jobs: Counter,
    /// Failed Redis operations, by operation.
    pub redis_errors: Family<OperationLabel, Counter>,
    /// 1 while Redis answers, 0 while it does not.
    pub redis_up: Gauge,
}

impl RedisMetrics {
    /// Creates the Redis-mode families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> RedisMetrics {
        let m = RedisMetrics::default();
        registry.register(
            "httpsd_cache_operations",
            "Cache operations in server-only mode, by operation (hit, stale, miss, expired)",
            m.cache_operations.clone(),
        );
        registry.register(
            "httpsd_update_queue_jobs",
            "Current jobs pending in the queue",
            m.queue_jobs.clone(),
        );
        registry.register(
            "httpsd_redis_worker_jobs_processed",
            "Jobs processed by Redis workers, by worker and status (success, error, cache_error)",
            m.worker_jobs.clone(),
        );
        registry.register(
            "httpsd_redis_worker_started",
            "How many times a Redis worker loop has been started",
            m.worker_started.clone(),
        );
        registry.register(
            "httpsd_redis_stale_jobs_cleaned",
            "Jobs recovered from the processing lists of dead or stuck workers",
            m.stale_jobs_cleaned.clone(),
        );
        registry.register(
            "httpsd_redis_jobs_requeued",
            "Jobs put back on the queue (recovered from dead workers or handed back at shutdown)",
            m.jobs_requeued.clone(),
        );
        registry.register(
            "httpsd_finished_jobs",
            "Background jobs finished successfully",
            m.finished_jobs.clone(),
        );
        registry.register(
            "httpsd_redis_errors",
            "Failed Redis operations, by operation",
            m.redis_errors.clone(),
        );
        registry.register(
            "httpsd_redis_up",
            "1 while Redis answers, 0 while it does not",
            m.redis_up.clone(),
        );
        m
    }

    /// Counts one failed Redis operation.
    pub fn redis_error(&self, operation: &str) {
        self.redis_errors
            .get_or_create(&OperationLabel {
                operation: operation.to_string(),
            })
            .inc();
    }

    /// Counts one server cache lookup outcome.
    pub fn cache_operation(&self, operation: &str) {
        self.cache_operations
            .get_or_create(&OperationLabel {
                operation: operation.to_string(),
            })
            .inc();
    }
}
