//! The outputs to run besides `/metrics` ([`Outputs`]): the textfile for node_exporter
//! ([`crate::textfile`]) and the Pushgateway ([`crate::push`]), each in its own task on its
//! own interval (never in a scrape's way), run once more when the program stops.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::outputs::{OutputStats, Render};
use crate::push::PushSettings;
use crate::textfile::TextfileSettings;

/// The outputs to run (none by default).
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// Write the scrape to a file for node_exporter's textfile collector.
    pub textfile: Option<TextfileSettings>,
    /// Push the scrape to a Pushgateway.
    pub push: Option<PushSettings>,
}

impl Outputs {
    /// Starts a task per output. Sending `true` on the returned channel makes each run
    /// once more and end.
    pub fn start(
        self,
        render: Render,
        stats: Arc<OutputStats>,
    ) -> (watch::Sender<bool>, Vec<JoinHandle<()>>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(t) = self.textfile {
            stats.textfile_on.store(true, Ordering::Relaxed);
            tasks.push(tokio::spawn(crate::textfile::run(
                t,
                render.clone(),
                stats.clone(),
                stop_rx.clone(),
            )));
        }
        if let Some(p) = self.push {
            stats.push_on.store(true, Ordering::Relaxed);
            tasks.push(tokio::spawn(crate::push::run(p, render, stats, stop_rx)));
        }
        (stop_tx, tasks)
    }
}
