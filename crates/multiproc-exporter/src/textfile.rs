//! `--textfile PATH`: the merged scrape written for node_exporter's textfile collector,
//! atomically (a temporary file in the same directory, then `rename`), so node_exporter
//! never reads half a file. The temporary name starts with `.` and does not end in `.prom`,
//! so node_exporter never reads it either.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::outputs::{OUTPUT_FORMAT, OutputStats, Render, wait_or_stop};

/// Where and how often the textfile is written.
#[derive(Debug, Clone)]
pub struct TextfileSettings {
    /// The file (node_exporter reads `*.prom` in its `--collector.textfile.directory`).
    pub path: PathBuf,
    /// Time between writes.
    pub interval: Duration,
}

/// Writes `body` to `path` atomically: a temporary file beside it, flushed to disk, then
/// renamed over `path`.
pub fn write_atomic(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} names no file", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Writes the file now and on every interval; once more when `stop` turns true.
pub async fn run(
    settings: TextfileSettings,
    render: Render,
    stats: Arc<OutputStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last_error: Option<String> = None;
    let mut stopping = false;
    loop {
        let res = match render(OUTPUT_FORMAT).await {
            Ok(body) => {
                let path = settings.path.clone();
                tokio::task::spawn_blocking(move || write_atomic(&path, body.as_bytes()))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
            Err(e) => Err(e),
        };
        stats.textfile.record(res.is_ok());
        match res {
            Ok(()) => {
                if last_error.take().is_some() {
                    tracing::info!(path = %settings.path.display(), "textfile written again");
                }
            }
            Err(e) => {
                // Once per change of the error, not on every interval.
                if last_error.as_deref() != Some(e.as_str()) {
                    tracing::error!(path = %settings.path.display(), "cannot write the textfile: {e}");
                }
                last_error = Some(e);
            }
        }
        if stopping {
            break;
        }
        // Stop asked: one last write with the final values.
        stopping = wait_or_stop(settings.interval, &mut stop).await;
    }
}
