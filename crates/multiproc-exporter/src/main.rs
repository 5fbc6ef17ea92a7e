//! `multiproc-exporter [DIR]`: serve a prometheus_client multiprocess directory.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use multiproc_exporter::archive::ArchiveOptions;
use multiproc_exporter::background::Outputs;
use multiproc_exporter::collectors::{CollectorSettings, Collectors};
use multiproc_exporter::extras::Extras;
use multiproc_exporter::procstats::ProcStats;
use multiproc_exporter::push::PushSettings;
use multiproc_exporter::server::{self, Settings};
use multiproc_exporter::textfile::TextfileSettings;

/// Serve (and optionally archive) the per-process .db files of Python's prometheus_client
/// multiprocess mode, merged exactly like MultiProcessCollector.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The multiprocess directory [default: $PROMETHEUS_MULTIPROC_DIR, then $prometheus_multiproc_dir]
    dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:9500")]
    listen: SocketAddr,
    /// Maximum number of concurrent client connections. When reached, the connection
    /// that has waited longest without sending a request is closed to let a new one in.
    #[arg(long, default_value_t = listener::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    connection_limit: usize,
    /// Seconds a new connection may take to send its first request's headers; past it
    /// the connection is closed.
    #[arg(long, default_value_t = listener::DEFAULT_HEADER_TIMEOUT.as_secs_f64(), value_name = "SECONDS")]
    header_timeout: f64,
    /// Seconds a keep-alive connection may stay open between requests (the next
    /// request's headers must arrive within it).
    #[arg(long, default_value_t = listener::DEFAULT_IDLE_TIMEOUT.as_secs_f64(), value_name = "SECONDS")]
    idle_timeout: f64,
    /// Merge the files of dead processes into archive files (changes the directory).
    #[arg(long)]
    archive: bool,
    /// Seconds between archive passes.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    archive_interval: f64,
    /// With --archive: delete all/liveall gauge files of dead processes instead of keeping them.
    #[arg(long, requires = "archive")]
    drop_dead_all_gauges: bool,
    /// With --archive: at most this many dead pids per pass (scrapes wait for a pass).
    #[arg(long, default_value_t = 500, value_name = "N")]
    archive_max_pids: usize,
    /// Reader threads (0 = one per core, at most 4).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Seconds between scrapes that stat every file; in between, an inotify watch on the
    /// directory says which files changed (0 = no watch, stat every file on every scrape).
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    full_check_interval: f64,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// A custom collector: a .py file, or a directory of them (names starting with _ or .
    /// ignored). Repeatable. It registers collectors on prometheus_client.REGISTRY at
    /// import, or defines a module-level collect().
    #[arg(long = "collector", value_name = "PATH")]
    collectors: Vec<PathBuf>,
    /// The Python interpreter the collectors run in (the application's virtualenv).
    #[arg(long, default_value = "python3", value_name = "PATH")]
    python: PathBuf,
    /// Seconds a collection may take; past it the collector's families are left out and
    /// its worker is replaced.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    collector_timeout: f64,
    /// Seconds a collector's result is reused (0: every scrape collects; concurrent scrapes
    /// share one collection). An expired result is served while a new one is collected.
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    collector_cache_seconds: f64,
    /// Serve process_* metrics (Python's ProcessCollector) of every live writer, with a pid label.
    #[arg(long)]
    process_metrics: bool,
    /// Also write the scrape to this file, atomically, for node_exporter's textfile collector.
    #[arg(long, value_name = "PATH")]
    textfile: Option<PathBuf>,
    /// Seconds between textfile writes.
    #[arg(long, default_value_t = 15.0, value_name = "SECONDS")]
    textfile_interval: f64,
    /// Also push the scrape to this Pushgateway (http://host:9091), on an interval and at shutdown.
    #[arg(long, value_name = "URL")]
    push_to: Option<String>,
    /// The job of the Pushgateway grouping key.
    #[arg(long, default_value = "multiproc-exporter", value_name = "NAME")]
    push_job: String,
    /// Another grouping key label, NAME=VALUE. Repeatable.
    #[arg(long = "push-label", value_name = "NAME=VALUE")]
    push_labels: Vec<String>,
    /// Seconds between pushes.
    #[arg(long, default_value_t = 15.0, value_name = "SECONDS")]
    push_interval: f64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn seconds(value: f64, option: &str, zero_ok: bool) -> anyhow::Result<Duration> {
    if !(value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0)) && value < 1e9) {
        bail!(
            "{option} must be a {} number of seconds, not {value}",
            if zero_ok { "non-negative" } else { "positive" }
        );
    }
    Ok(Duration::from_secs_f64(value))
}

fn outputs(cli: &Cli) -> anyhow::Result<Outputs> {
    let textfile = match &cli.textfile {
        Some(path) => Some(TextfileSettings {
            path: path.clone(),
            interval: seconds(cli.textfile_interval, "--textfile-interval", false)?,
        }),
        None => None,
    };
    let push = match &cli.push_to {
        Some(url) => {
            if url.starts_with("https://") {
                bail!(
                    "--push-to {url}: https is not supported; use the Pushgateway's http address"
                );
            }
            let mut labels = Vec::new();
            for l in &cli.push_labels {
                let Some((k, v)) = l.split_once('=') else {
                    bail!("--push-label {l:?}: expected NAME=VALUE");
                };
                if !exposition::names::is_valid_legacy_label_name(k) || k == "job" {
                    bail!("--push-label {l:?}: {k:?} is not a usable label name");
                }
                labels.push((k.to_string(), v.to_string()));
            }
            if cli.push_job.is_empty() {
                bail!("--push-job must not be empty");
            }
            Some(PushSettings {
                gateway: url.clone(),
                job: cli.push_job.clone(),
                labels,
                interval: seconds(cli.push_interval, "--push-interval", false)?,
            })
        }
        None => None,
    };
    Ok(Outputs { textfile, push })
}

async fn extras(cli: &Cli, dir: &std::path::Path) -> anyhow::Result<Extras> {
    let collectors = if cli.collectors.is_empty() {
        None
    } else {
        Some(
            Collectors::start(CollectorSettings {
                paths: cli.collectors.clone(),
                python: cli.python.clone(),
                timeout: seconds(cli.collector_timeout, "--collector-timeout", false)?,
                cache: seconds(
                    cli.collector_cache_seconds,
                    "--collector-cache-seconds",
                    true,
                )?,
            })
            .await?,
        )
    };
    let procstats = cli
        .process_metrics
        .then(|| ProcStats::new(dir.to_path_buf()));
    Ok(Extras::new(collectors, procstats))
}

fn settings(cli: &Cli) -> anyhow::Result<Settings> {
    let dir = match &cli.dir {
        Some(d) => d.clone(),
        None => match std::env::var_os("PROMETHEUS_MULTIPROC_DIR")
            .or_else(|| std::env::var_os("prometheus_multiproc_dir"))
        {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => bail!("no directory given and PROMETHEUS_MULTIPROC_DIR is not set"),
        },
    };
    let meta = std::fs::metadata(&dir)
        .with_context(|| format!("multiprocess directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    std::fs::read_dir(&dir).with_context(|| format!("cannot read directory {}", dir.display()))?;
    if cli.connection_limit == 0 {
        bail!("--connection-limit must be at least 1");
    }
    if !(cli.archive_interval.is_finite() && cli.archive_interval > 0.0) {
        bail!("--archive-interval must be a positive number of seconds");
    }
    Ok(Settings {
        dir,
        threads: cli.threads,
        archive: cli.archive.then(|| ArchiveOptions {
            drop_dead_all_gauges: cli.drop_dead_all_gauges,
            max_pids_per_pass: cli.archive_max_pids.max(1),
        }),
        archive_interval: Duration::from_secs_f64(cli.archive_interval),
        connections: listener::ConnectionLimits {
            max_connections: cli.connection_limit,
            header_timeout: seconds(cli.header_timeout, "--header-timeout", false)?,
            idle_timeout: seconds(cli.idle_timeout, "--idle-timeout", false)?,
        },
        full_check_interval: seconds(cli.full_check_interval, "--full-check-interval", true)?,
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = settings(&cli)?;
    let outputs = outputs(&cli)?;
    let extras = std::sync::Arc::new(extras(&cli, &settings.dir).await?);
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    tracing::info!(
        dir = %settings.dir.display(),
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        archive = settings.archive.is_some(),
        "multiproc-exporter serving"
    );
    server::run_with(
        listener,
        settings,
        extras,
        outputs,
        listener::shutdown_signal(),
    )
    .await?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: escape codes would end up in log files and collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
