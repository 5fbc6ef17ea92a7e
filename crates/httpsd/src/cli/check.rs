//! `check`'s command line and its conversion into [`CheckSettings`].

use std::path::PathBuf;

use super::runner::{RunnerArgs, runner_settings};
use crate::check::{CheckSettings, OutputFormat};
use crate::settings::{DEFAULT_MAX_FILE_SIZE, SettingsError, canonical_root};

/// `--format` of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One PASS/FAIL line per generator, every problem, then a summary.
    Text,
    /// One JSON document (schema in docs/check.md).
    Json,
}

/// Arguments of `check`.
#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {
    /// The directory of target generators.
    #[arg(value_name = "ROOT_DIR")]
    pub root_dir: PathBuf,
    /// Leave out files under P: a path relative to ROOT_DIR (`fail`), or the original's
    /// raw prefix of ROOT_DIR/path as typed (`t/fail`). Repeatable.
    #[arg(short = 'i', long = "ignore-path", value_name = "P")]
    pub ignore_path: Vec<String>,
    /// Accept targets without a port (for trees relying on the scheme's default port).
    #[arg(long)]
    pub allow_missing_port: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// How many executable generators run at once (default: 4 per core, at least 8);
    /// Python generators run on the --python-workers workers.
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Refuse static files larger than this many bytes (same default as serve).
    #[arg(long, default_value_t = DEFAULT_MAX_FILE_SIZE, value_name = "BYTES")]
    pub max_file_size: u64,
    /// How dynamic generators are run (same options and timeout as serve).
    #[command(flatten)]
    pub runner: RunnerArgs,
    /// Also check the exporters in DIR: run each once and report every problem of its
    /// output.
    #[arg(long, value_name = "DIR")]
    pub exporters: Option<PathBuf>,
}

/// Validates `args` into the settings of `check`.
pub fn check_settings(args: &CheckArgs) -> Result<CheckSettings, SettingsError> {
    let root = canonical_root(&args.root_dir)?;
    let runner = runner_settings(&root, &args.runner)?;
    Ok(CheckSettings {
        typed_root: args.root_dir.to_string_lossy().into_owned(),
        root,
        ignore_path: args.ignore_path.clone(),
        allow_missing_port: args.allow_missing_port,
        format: match args.format {
            Format::Text => OutputFormat::Text,
            Format::Json => OutputFormat::Json,
        },
        jobs: args.jobs.map(usize::from),
        max_file_size: args.max_file_size,
        runner,
        python_workers_given: args.runner.python_workers.is_some(),
        exporters: match &args.exporters {
            Some(dir) => Some(super::serve::exporters_dir(dir)?),
            None => None,
        },
    })
}
