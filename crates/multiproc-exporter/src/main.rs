//! `multiproc-exporter [DIR]`: serve a prometheus_client multiprocess directory.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use multiproc_exporter::archive::ArchiveOptions;
use multiproc_exporter::server::{self, Settings};

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
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = settings(&cli)?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    tracing::info!(
        dir = %settings.dir.display(),
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        archive = settings.archive.is_some(),
        "multiproc-exporter serving"
    );
    server::run(listener, settings, shutdown_signal()).await?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
