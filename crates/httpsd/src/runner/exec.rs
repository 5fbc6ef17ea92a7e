//! Executable generators: any non-ignored file with an execute bit that is not
//! `.py`, `.json`, `.yaml` or `.yml`, in any language.
//!
//! Contract: it runs with the generator root as working directory; query parameters
//! arrive as environment variables `HTTPSD_PARAM_<NAME>` (name upper-cased, other
//! characters than `A-Z0-9_` turned into `_`) and as one JSON object on stdin; it
//! prints a JSON array of target groups on stdout and exits 0. Its stderr goes to
//! our log. It runs in its own process group, which is killed on timeout and when
//! the program exits (so a forgotten background child cannot hold the pipe open).

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use super::{RunMode, RunnerSettings};
use crate::error::{ErrorKind, GeneratorError};
use crate::params::Params;
use crate::tree::GeneratorFile;

/// Largest stdout accepted from a program.
pub const MAX_OUTPUT: usize = 64 * 1024 * 1024;

/// Lines of stderr kept for the error report.
const STDERR_TAIL: usize = 20;

/// Runs executable generators.
pub struct ExecRunner {
    root: std::path::PathBuf,
    max_run_time: Duration,
}

impl ExecRunner {
    /// A new runner.
    pub fn new(settings: &RunnerSettings) -> ExecRunner {
        ExecRunner {
            root: settings.root.clone(),
            max_run_time: settings.max_run_time,
        }
    }

    /// Runs one generator and parses its stdout as JSON.
    pub async fn run(
        &self,
        generator: &GeneratorFile,
        params: &Params,
        mode: RunMode,
    ) -> Result<serde_json::Value, GeneratorError> {
        let out = self.run_bytes(generator, params, mode).await?;
        parse_stdout(&generator.rel, &out)
    }

    /// Runs one generator and returns its stdout, unparsed (the one-pass encoder reads it).
    pub async fn run_bytes(
        &self,
        generator: &GeneratorFile,
        params: &Params,
        mode: RunMode,
    ) -> Result<Vec<u8>, GeneratorError> {
        let rel = &generator.rel;
        let mut cmd = Command::new(&generator.abs);
        cmd.current_dir(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for (k, v) in params.pairs() {
            cmd.env(format!("HTTPSD_PARAM_{}", env_name(k)), v);
        }
        if mode == RunMode::Check {
            cmd.env("PROMETHEUS_HTTP_SD_IS_TEST", "1");
        }
        let mut child = cmd.spawn().map_err(|e| {
            let why = if e.raw_os_error() == Some(nix::libc::ENOEXEC) {
                "is not a program the system can run (no #! line?)".to_string()
            } else {
                format!("could not be started: {e}")
            };
            GeneratorError::new(ErrorKind::Exit, format!("{rel} {why}"))
        })?;
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));

        let mut stdin = child.stdin.take();
        let input = format!("{}\n", params.to_json());
        let feed = async move {
            if let Some(stdin) = stdin.as_mut() {
                // A program that does not read stdin closes it: that is fine.
                let _ = stdin.write_all(input.as_bytes()).await;
            }
            drop(stdin);
        };
        let stdout = child.stdout.take();
        let read_out = async move {
            let mut buf = Vec::new();
            if let Some(out) = stdout {
                let mut limited = out.take(MAX_OUTPUT as u64 + 1);
                let _ = limited.read_to_end(&mut buf).await;
            }
            buf
        };
        let stderr = child.stderr.take();
        let gen_name = rel.clone();
        let read_err = async move {
            let mut tail: std::collections::VecDeque<String> = Default::default();
            if let Some(err) = stderr {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(generator = %gen_name, "stderr: {line}");
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
            tail.into_iter().collect::<Vec<_>>().join("\n")
        };
        let run = async {
            let (_, out, err, status) = tokio::join!(feed, read_out, read_err, async {
                let status = child.wait().await;
                // The program is done: its leftover children must not keep our pipes open.
                if let Some(pgid) = pgid {
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
                status
            });
            (out, err, status)
        };
        let (out, err_tail, status) = match tokio::time::timeout(self.max_run_time, run).await {
            Ok(r) => r,
            Err(_) => {
                if let Some(pgid) = pgid {
                    let _ = killpg(pgid, Signal::SIGKILL);
                }
                return Err(GeneratorError::new(
                    ErrorKind::Timeout,
                    format!(
                        "{rel} did not finish within {:.1} s (--max-run-time); its process group was killed",
                        self.max_run_time.as_secs_f64()
                    ),
                ));
            }
        };
        let status = status.map_err(|e| {
            GeneratorError::new(ErrorKind::Internal, format!("{rel}: waiting failed: {e}"))
        })?;
        if !status.success() {
            let how = match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                _ => "failed".to_string(),
            };
            let mut e = GeneratorError::new(ErrorKind::Exit, format!("{rel} {how}"));
            if !err_tail.is_empty() {
                e = e.with_traceback(err_tail);
            }
            return Err(e);
        }
        if out.len() > MAX_OUTPUT {
            return Err(GeneratorError::new(
                ErrorKind::TooLarge,
                format!("{rel} printed more than {MAX_OUTPUT} bytes"),
            ));
        }
        Ok(out)
    }
}

/// Parses a program's stdout as JSON, with an error that shows how the output starts.
pub fn parse_stdout(rel: &str, out: &[u8]) -> Result<serde_json::Value, GeneratorError> {
    serde_json::from_slice(out).map_err(|e| {
        let shown = String::from_utf8_lossy(&out[..out.len().min(200)]).into_owned();
        GeneratorError::new(
            ErrorKind::Parse,
            format!("{rel} printed invalid JSON on stdout ({e}); output starts with {shown:?}"),
        )
    })
}

/// The environment variable suffix for a parameter name.
pub fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
