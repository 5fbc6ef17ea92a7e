//! The pool's errors: why a worker could not start ([`StartError`]) and why one call
//! failed ([`PoolError`]). Each call error names the call (its `name`) first, so a
//! message stands alone in a log or a response body.

use std::time::Duration;

/// Why the pool or one of its workers could not start. The message names the
/// interpreter and the option that chose it ([`crate::PoolSettings::python_option`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StartError {
    /// A one-line explanation (the worker's first output may follow on more lines).
    pub message: String,
}

impl StartError {
    pub(crate) fn new(message: impl Into<String>) -> StartError {
        StartError {
            message: message.into(),
        }
    }
}

/// Why one call did not return a value. Every variant holds the call's `name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The function raised, or returned something that is not JSON; `message` is
    /// Python's one-line summary (`ValueError: ...`).
    #[error("{name}: {message}")]
    Exception {
        /// The call's name.
        name: String,
        /// What Python said.
        message: String,
        /// The traceback from the user's code on (none for an unusable result).
        traceback: Option<String>,
    },
    /// The worker answered without a result.
    #[error("{name}: the Python worker sent no result")]
    NoResult {
        /// The call's name.
        name: String,
    },
    /// The worker's result is JSON that cannot be read as a tree (nested too deep).
    #[error("{name}: the Python worker's result cannot be read ({reason})")]
    Unreadable {
        /// The call's name.
        name: String,
        /// The parser's error.
        reason: String,
    },
    /// The call outlived its deadline; its worker was killed with its process group.
    #[error("{name}: still running after {}s; its Python worker was killed", .limit.as_secs_f64())]
    Timeout {
        /// The call's name.
        name: String,
        /// The deadline it had.
        limit: Duration,
    },
    /// Every worker stayed busy until the call's deadline.
    #[error("{name}: no Python worker became free within {}s (all {workers} busy)", .limit.as_secs_f64())]
    Busy {
        /// The call's name.
        name: String,
        /// How long it waited.
        limit: Duration,
        /// The pool's size.
        workers: usize,
    },
    /// The worker died during the call (a crash, `os._exit`, a signal).
    #[error("{name}: the Python worker running it died ({reason})")]
    Died {
        /// The call's name.
        name: String,
        /// Its exit status, or what was seen instead.
        reason: String,
        /// The worker's last lines of output (often why it died).
        output: String,
    },
    /// The worker answered something that is not the protocol.
    #[error("{name}: the Python worker broke the protocol ({reason}); worker replaced")]
    Protocol {
        /// The call's name.
        name: String,
        /// What was wrong.
        reason: String,
        /// The worker's last lines of output.
        output: String,
    },
    /// The worker answered another request.
    #[error(
        "{name}: the Python worker answered request {got} instead of {expected}; worker replaced"
    )]
    WrongReply {
        /// The call's name.
        name: String,
        /// The request id it answered.
        got: u64,
        /// The request id it was sent.
        expected: u64,
    },
    /// No worker was free and none could be started.
    #[error("{name}: cannot start a Python worker: {error}")]
    Start {
        /// The call's name.
        name: String,
        /// Why.
        error: StartError,
    },
    /// The pool is shutting down.
    #[error("{name}: the Python worker pool is shutting down")]
    ShuttingDown {
        /// The call's name.
        name: String,
    },
    /// The pool's slots are gone (it was dropped).
    #[error("{name}: the Python worker pool is closed")]
    Closed {
        /// The call's name.
        name: String,
    },
    /// The request could not be encoded.
    #[error("{name}: cannot encode the request: {reason}")]
    Encode {
        /// The call's name.
        name: String,
        /// The encoder's error.
        reason: String,
    },
    /// The task running the call panicked or was cancelled.
    #[error("{name}: the Python call failed: {reason}")]
    Task {
        /// The call's name.
        name: String,
        /// The task's error.
        reason: String,
    },
    /// The pool was started with no workers.
    #[error("{name}: the Python worker pool has no workers")]
    Disabled {
        /// The call's name.
        name: String,
    },
}

impl PoolError {
    /// The traceback of an exception, or the worker's last output when it died or
    /// broke the protocol (`None` when there is none).
    pub fn traceback(&self) -> Option<String> {
        match self {
            PoolError::Exception { traceback, .. } => traceback.clone().filter(|tb| !tb.is_empty()),
            PoolError::Died { output, .. } | PoolError::Protocol { output, .. }
                if !output.is_empty() =>
            {
                Some(format!("last output of the worker:\n{output}"))
            }
            _ => None,
        }
    }

    /// The same error for another call (an error met before any one call was taken).
    pub(crate) fn renamed(&self, name: String) -> PoolError {
        let mut e = self.clone();
        match &mut e {
            PoolError::Exception { name: n, .. }
            | PoolError::NoResult { name: n }
            | PoolError::Unreadable { name: n, .. }
            | PoolError::Timeout { name: n, .. }
            | PoolError::Busy { name: n, .. }
            | PoolError::Died { name: n, .. }
            | PoolError::Protocol { name: n, .. }
            | PoolError::WrongReply { name: n, .. }
            | PoolError::Start { name: n, .. }
            | PoolError::ShuttingDown { name: n }
            | PoolError::Closed { name: n }
            | PoolError::Encode { name: n, .. }
            | PoolError::Task { name: n, .. }
            | PoolError::Disabled { name: n } => *n = name,
        }
        e
    }
}
