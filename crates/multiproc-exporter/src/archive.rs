//! Archiver (work in progress).
use std::path::PathBuf;

/// Archiver options.
#[derive(Debug, Clone, Default)]
pub struct ArchiveOptions {
    /// Drop `all`/`liveall` gauge files of dead processes.
    pub drop_dead_all_gauges: bool,
}

/// Result of one pass.
#[derive(Debug, Default)]
pub struct PassReport {
    /// Why nothing was done, if refused.
    pub refused: Option<String>,
    /// Dead pids folded in.
    pub pids: usize,
    /// Files folded into archives.
    pub archived_files: usize,
    /// Files deleted.
    pub deleted_files: usize,
}

/// Archive errors.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The archiver.
#[derive(Debug)]
pub struct Archiver {
    dir: PathBuf,
    opts: ArchiveOptions,
}

impl Archiver {
    /// New archiver.
    pub fn new(dir: PathBuf, opts: ArchiveOptions) -> Archiver {
        Archiver { dir, opts }
    }
    /// One pass.
    pub fn pass(&mut self) -> Result<PassReport, ArchiveError> {
        let _ = (&self.dir, &self.opts);
        Ok(PassReport::default())
    }
}
