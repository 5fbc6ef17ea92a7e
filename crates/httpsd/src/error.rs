//! Errors of generators and paths, and the one place that turns them into HTTP
//! status codes and JSON bodies.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::validate::InvalidOutput;

/// What went wrong with one generator, in categories operators can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The file could not be read.
    Read,
    /// The file is empty.
    Empty,
    /// The file is larger than the configured limit.
    TooLarge,
    /// The content is not valid JSON/YAML (or the program printed invalid JSON).
    Parse,
    /// The output is not what Prometheus accepts.
    Invalid,
    /// The Python code raised an exception (or returned something unusable).
    Exception,
    /// The executable exited with a non-zero status or could not be started.
    Exit,
    /// The run took longer than its timeout.
    Timeout,
    /// The worker process running it died.
    WorkerDied,
    /// This kind of generator cannot be run by this build or mode.
    Unsupported,
    /// A bug or resource problem on our side.
    Internal,
}

/// A generator failure: what kind, a message, and the traceback when there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct GeneratorError {
    /// The category.
    pub kind: ErrorKind,
    /// A one-line explanation.
    pub message: String,
    /// The Python traceback (or the program's stderr tail), when available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
}

impl GeneratorError {
    /// A new error without a traceback.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> GeneratorError {
        GeneratorError {
            kind,
            message: message.into(),
            traceback: None,
        }
    }

    /// Adds a traceback.
    pub fn with_traceback(mut self, traceback: impl Into<String>) -> GeneratorError {
        self.traceback = Some(traceback.into());
        self
    }
}

impl From<InvalidOutput> for GeneratorError {
    fn from(e: InvalidOutput) -> Self {
        GeneratorError::new(ErrorKind::Invalid, e.to_string())
    }
}

/// One failing generator of a path, for the error body.
#[derive(Debug, Clone, Serialize)]
pub struct FailedGenerator {
    /// Generator path relative to the root.
    pub generator: String,
    /// The error.
    #[serde(flatten)]
    pub error: GeneratorError,
}

/// Why a `targets` request could not be answered with a list.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PathError {
    /// The path is unsafe or malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No such path under the root (or it is ignored).
    #[error("path not found: {0:?}")]
    NotFound(String),
    /// A directory below the path cannot be read, so the list would be partial.
    #[error("cannot read {dir:?}: {reason}")]
    Unreadable {
        /// The directory, relative to the root.
        dir: String,
        /// The OS error.
        reason: String,
    },
    /// One or more generators failed; nothing is served.
    #[error("{} generator(s) failed", .0.len())]
    Generators(Vec<FailedGenerator>),
}

impl PathError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            PathError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PathError::NotFound(_) => StatusCode::NOT_FOUND,
            PathError::Unreadable { .. } | PathError::Generators(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The JSON body for this error.
    pub fn body(&self, path: &str) -> serde_json::Value {
        match self {
            PathError::Generators(failed) => serde_json::json!({
                "error": self.to_string(),
                "path": path,
                "generators": failed,
            }),
            other => serde_json::json!({ "error": other.to_string(), "path": path }),
        }
    }
}

/// A JSON response in the original's byte format (`application/json`, trailing newline).
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::pyjson::to_body(value),
    )
        .into_response()
}
