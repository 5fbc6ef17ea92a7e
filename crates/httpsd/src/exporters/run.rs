//! Runs one exporter and turns its output into validated families: a `.prom` file is
//! read (once settled, as static generators are), an executable's stdout is taken as
//! it printed it, a `.py` module runs on its own Python worker (see [`super::python`]).
//! Every output is parsed and validated with the `exposition` crate; invalid output is
//! an error naming each bad line, never half-served.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use exposition::{Escaping, Format, MetricFamily};
use futures::future::BoxFuture;

use super::board::Board;
use super::python::PythonExporters;
use crate::cache::{RunKey, Source};
use crate::error::{ErrorKind, GeneratorError};
use crate::params::Params;
use crate::runner::exec::ExecRunner;
use crate::runner::{RunMode, RunnerSettings};
use crate::static_files::SETTLE;
use crate::status::CacheState;
use crate::tree::{FileStamp, GeneratorFile, GeneratorKind};

/// How many of an output's problems an error message lists.
const ERRORS_SHOWN: usize = 5;

/// An exporter's validated output.
#[derive(Debug)]
pub struct ExporterOutput {
    /// Its families, in its order.
    pub families: Vec<MetricFamily>,
    /// Number of samples (series).
    pub series: usize,
    /// Its families encoded, by format, made on first use: a cached output is served
    /// to every scraper until it expires, and encoding was most of a cached scrape.
    encoded: Mutex<HashMap<Format, Arc<str>>>,
}

impl ExporterOutput {
    /// Wraps parsed families.
    pub fn new(families: Vec<MetricFamily>) -> ExporterOutput {
        let series = families.iter().map(|f| f.samples.len()).sum();
        ExporterOutput {
            families,
            series,
            encoded: Mutex::new(HashMap::new()),
        }
    }

    /// Its families in `format`, without OpenMetrics' closing `# EOF` (the scrape's
    /// body ends with httpsd's own families and one `# EOF`). Families encode
    /// independently, so joining these parts equals encoding all families at once.
    pub fn encoded(&self, format: &Format) -> Arc<str> {
        let mut cache = self.encoded.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .entry(*format)
            .or_insert_with(|| Arc::from(encode_part(&self.families, format)))
            .clone()
    }
}

/// `families` encoded in `format` as one part of a body: without OpenMetrics' closing
/// `# EOF`, which the body writes once at its end. Families encode independently, so
/// parts joined equal one encoding of all their families.
pub fn encode_part<'a>(
    families: impl IntoIterator<Item = &'a MetricFamily>,
    format: &Format,
) -> String {
    let mut text = exposition::encode_sized(families, format, 1024);
    if matches!(format, Format::OpenMetrics(_)) {
        text.truncate(text.len() - EOF.len());
    }
    text
}

/// The end of an OpenMetrics body.
pub const EOF: &str = "# EOF\n";

/// Parses and validates exposition text; the error lists the first problems with
/// their line numbers.
pub fn parse_output(
    rel: &str,
    text: &[u8],
    format: Format,
) -> Result<ExporterOutput, GeneratorError> {
    match exposition::parse_bytes(text, format) {
        Ok(families) => Ok(ExporterOutput::new(families)),
        Err(first) => {
            let all = match std::str::from_utf8(text) {
                Ok(s) => exposition::validate(s, format),
                Err(_) => vec![first],
            };
            let shown: Vec<String> = all
                .iter()
                .take(ERRORS_SHOWN)
                .map(|e| e.to_string())
                .collect();
            let more = all.len().saturating_sub(ERRORS_SHOWN);
            let tail = if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            };
            Err(GeneratorError::new(
                ErrorKind::Invalid,
                format!(
                    "{rel}: invalid exposition output: {}{tail}",
                    shown.join("; ")
                ),
            ))
        }
    }
}

/// The format of a program's or file's text: OpenMetrics when it ends with `# EOF`,
/// text 0.0.4 otherwise.
pub fn format_of(text: &[u8]) -> Format {
    let trimmed = text.trim_ascii_end();
    if trimmed.ends_with(b"# EOF") {
        Format::OpenMetrics(Escaping::Underscores)
    } else {
        Format::Text(Escaping::Underscores)
    }
}

/// Runs exporters of every kind.
pub struct ExporterRunners {
    exec: ExecRunner,
    python: PythonExporters,
    max_file_size: u64,
}

/// How many times a `.prom` file that keeps changing is read before giving up.
const READ_TRIES: usize = 5;

impl ExporterRunners {
    /// Runners for the exporters under `settings.root`.
    pub fn new(settings: &RunnerSettings, max_file_size: u64) -> ExporterRunners {
        ExporterRunners {
            exec: ExecRunner::new(settings),
            python: PythonExporters::new(settings),
            max_file_size,
        }
    }

    /// The Python side (module affinity, shutdown).
    pub fn python(&self) -> &PythonExporters {
        &self.python
    }

    /// Runs one exporter with `params` and validates its output.
    pub async fn run(
        &self,
        file: &GeneratorFile,
        params: &Params,
    ) -> Result<ExporterOutput, GeneratorError> {
        let (text, format) = self.output(file, params).await?;
        parse_output(&file.rel, &text, format)
    }

    /// Runs one exporter with `params`; returns its text as it wrote it and its format
    /// (for `check`, which lists every problem of it).
    pub async fn output(
        &self,
        file: &GeneratorFile,
        params: &Params,
    ) -> Result<(Vec<u8>, Format), GeneratorError> {
        let text = match file.kind {
            GeneratorKind::Prom => self.read_prom(file).await?,
            GeneratorKind::Executable => self.exec.run_bytes(file, params, RunMode::Serve).await?,
            GeneratorKind::Python => {
                let text = self.python.run(file, params).await?;
                return Ok((
                    text.into_bytes(),
                    Format::OpenMetrics(Escaping::Underscores),
                ));
            }
            GeneratorKind::Json | GeneratorKind::Yaml => {
                return Err(GeneratorError::new(
                    ErrorKind::Internal,
                    format!("{} is not an exporter", file.rel),
                ));
            }
        };
        let format = format_of(&text);
        Ok((text, format))
    }

    /// Reads a `.prom` file once it has settled and did not change while read (the
    /// rule of static generators, `static_files::SETTLE`: a half-written file is
    /// never served).
    async fn read_prom(&self, file: &GeneratorFile) -> Result<Vec<u8>, GeneratorError> {
        let (file, max) = (file.clone(), self.max_file_size);
        let read = tokio::task::spawn_blocking(move || {
            for _ in 0..READ_TRIES {
                match read_settled(&file, max)? {
                    Some(bytes) => return Ok(bytes),
                    None => std::thread::sleep(SETTLE),
                }
            }
            Err(GeneratorError::new(
                ErrorKind::Read,
                format!("{}: the file kept changing while read", file.rel),
            ))
        });
        read.await.unwrap_or_else(|e| {
            Err(GeneratorError::new(
                ErrorKind::Internal,
                format!("read task failed: {e}"),
            ))
        })
    }
}

/// One read of a whole file: `None` when it has not settled or changed while read.
/// By hand rather than through `static_files`' loader, which parses target groups.
fn read_settled(file: &GeneratorFile, max: u64) -> Result<Option<Vec<u8>>, GeneratorError> {
    let error = |kind, what: &str, e: &dyn std::fmt::Display| {
        GeneratorError::new(kind, format!("cannot {what} {}: {e}", file.rel))
    };
    let stamp = |m: std::io::Result<std::fs::Metadata>| m.map(|m| FileStamp::of(&m));
    let mut f = std::fs::File::open(&file.abs).map_err(|e| error(ErrorKind::Read, "open", &e))?;
    let before = stamp(f.metadata()).map_err(|e| error(ErrorKind::Read, "stat", &e))?;
    let now_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    if now_ns - before.mtime_ns < SETTLE.as_nanos() as i128 {
        return Ok(None);
    }
    if before.size > max {
        return Err(GeneratorError::new(
            ErrorKind::TooLarge,
            format!(
                "{} is {} bytes, more than the limit of {max} bytes (--max-file-size)",
                file.rel, before.size
            ),
        ));
    }
    let mut bytes = Vec::new();
    (&mut f)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(ErrorKind::Read, "read", &e))?;
    let after = stamp(std::fs::metadata(&file.abs)).ok();
    Ok((after == Some(before) && bytes.len() as u64 == before.size).then_some(bytes))
}

/// Runs exporters for the cache (the cache machinery of target generators, reused
/// whole: single flight, `cache_time`, stale-while-revalidate, per-exporter metrics).
pub struct ExporterSource {
    /// The runners.
    pub runners: Arc<ExporterRunners>,
    /// Where runs are recorded for the admin page and `?debug=true`.
    pub board: Arc<Board>,
}

impl Source for ExporterSource {
    type Key = RunKey;
    type Value = Arc<ExporterOutput>;
    type Error = GeneratorError;

    fn run(&self, key: &RunKey) -> BoxFuture<'static, Result<Self::Value, Self::Error>> {
        let (runners, board, key) = (self.runners.clone(), self.board.clone(), key.clone());
        Box::pin(async move {
            let started = Instant::now();
            let result = runners.run(&key.generator, &key.params).await.map(Arc::new);
            let series = result.as_ref().map(|o| o.series);
            board.record(&key.generator.rel, series, started.elapsed());
            if let Err(e) = &result {
                tracing::warn!(exporter = %key.generator.rel, kind = ?e.kind, error = %e.message, "exporter failed");
            }
            result
        })
    }

    fn state_changed(&self, key: &RunKey, state: CacheState, _produced_at: Option<SystemTime>) {
        self.board.set_cache_state(&key.generator.rel, state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(text: &str) -> ExporterOutput {
        let fmt = Format::OpenMetrics(Escaping::Underscores);
        ExporterOutput::new(exposition::parse(text, fmt).expect("valid OpenMetrics"))
    }

    #[test]
    fn joined_parts_equal_one_encoding_in_every_format() {
        let a = output("# TYPE a counter\na_total{x=\"1\"} 1.5\n# TYPE b gauge\nb 2\n# EOF\n");
        let b = output(
            "# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\nh_sum 3.0\n# EOF\n",
        );
        for format in [
            Format::Text(Escaping::Underscores),
            Format::OpenMetrics(Escaping::Underscores),
            Format::OpenMetrics(Escaping::AllowUtf8),
        ] {
            let all: Vec<&MetricFamily> = a.families.iter().chain(&b.families).collect();
            let whole = exposition::encode(all, &format);
            let eof = if matches!(format, Format::OpenMetrics(_)) {
                "# EOF\n"
            } else {
                ""
            };
            // Twice: the second answer comes from the cache.
            for _ in 0..2 {
                let joined = format!("{}{}{eof}", a.encoded(&format), b.encoded(&format));
                assert_eq!(joined, whole, "{format:?}");
            }
        }
    }
}
