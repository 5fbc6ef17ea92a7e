//! Error reports to Sentry (`-s/--sentry-url DSN`): generator failures with the path,
//! generator, parameters and the Python traceback, and internal errors (`error!` log
//! events through the tracing integration, and panics).
//!
//! A failing generator is reported once per failure streak and message (the status
//! board remembers what was sent), not once per Prometheus poll.

use crate::error::{ErrorKind, FailedGenerator};
use crate::params::Params;
use crate::status::StatusBoard;

/// The DSN cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for -s/--sentry-url: {0}")]
pub struct SentryError(String);

/// Starts the Sentry client when `dsn` is given; keep the guard alive until exit (its
/// drop flushes pending events).
pub fn init(dsn: Option<&str>) -> Result<Option<sentry::ClientInitGuard>, SentryError> {
    let Some(dsn) = dsn.filter(|d| !d.trim().is_empty()) else {
        return Ok(None);
    };
    let parsed: sentry::types::Dsn = dsn
        .trim()
        .parse()
        .map_err(|e| SentryError(format!("{e}")))?;
    let mut options = sentry::ClientOptions::new();
    options.dsn = Some(parsed);
    options.release = Some(format!("httpsd@{}", env!("CARGO_PKG_VERSION")).into());
    let guard = sentry::init(options);
    tracing::info!("sentry sdk initialized!");
    Ok(Some(guard))
}

fn enabled() -> bool {
    sentry::Hub::current()
        .client()
        .is_some_and(|c| c.is_enabled())
}

/// Reports the failed generators of a path request (once per failure streak and message).
pub fn generator_failures(
    board: &StatusBoard,
    path: &str,
    params: &Params,
    failed: &[FailedGenerator],
) {
    if !enabled() {
        return;
    }
    for f in failed {
        if !board.claim_report(&f.generator, &f.error.message) {
            continue;
        }
        sentry::capture_event(failure_event(path, params, f));
    }
}

/// The Sentry event for one failed generator of a path.
pub fn failure_event(
    path: &str,
    params: &Params,
    f: &FailedGenerator,
) -> sentry::protocol::Event<'static> {
    use sentry::protocol::{Event, Exception, Level, Map, Value};
    let kind = serde_json::to_value(f.error.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let internal = f.error.kind == ErrorKind::Internal;
    let mut tags = Map::new();
    tags.insert("generator".to_string(), f.generator.clone());
    tags.insert("path".to_string(), format!("/targets/{path}"));
    tags.insert("error_kind".to_string(), kind.clone());
    let mut extra = Map::new();
    extra.insert("path".to_string(), Value::from(path.to_string()));
    extra.insert("generator".to_string(), Value::from(f.generator.clone()));
    extra.insert("params".to_string(), params.to_json());
    if let Some(tb) = &f.error.traceback {
        extra.insert("traceback".to_string(), Value::from(tb.clone()));
    }
    let message = match &f.error.traceback {
        Some(tb) => format!(
            "generator {} failed: {}\n\n{tb}",
            f.generator, f.error.message
        ),
        None => format!("generator {} failed: {}", f.generator, f.error.message),
    };
    Event {
        level: Level::Error,
        logger: Some(
            if internal {
                "httpsd.internal"
            } else {
                "httpsd.generator"
            }
            .to_string(),
        ),
        message: Some(message),
        exception: vec![Exception {
            ty: if internal {
                "InternalError".to_string()
            } else {
                format!("GeneratorError.{kind}")
            },
            value: Some(f.error.message.clone()),
            ..Default::default()
        }]
        .into(),
        tags,
        extra,
        fingerprint: vec![
            "generator-failure".into(),
            f.generator.clone().into(),
            kind.into(),
        ]
        .into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::GeneratorError;

    #[test]
    fn failure_event_carries_path_generator_params_and_traceback() {
        let f = FailedGenerator {
            generator: "sub/gen.py".into(),
            error: GeneratorError::new(ErrorKind::Exception, "ZeroDivisionError: division by zero")
                .with_traceback("Traceback (most recent call last):\n  File \"gen.py\", line 2\nZeroDivisionError: division by zero"),
        };
        let params = Params::from_pairs([("cluster", "eu-1")]);
        let e = failure_event("sub", &params, &f);
        assert_eq!(e.tags["generator"], "sub/gen.py");
        assert_eq!(e.tags["path"], "/targets/sub");
        assert_eq!(e.tags["error_kind"], "exception");
        assert_eq!(e.extra["params"]["cluster"], "eu-1");
        assert!(e.extra["traceback"].as_str().unwrap().contains("line 2"));
        assert!(e.message.as_deref().unwrap().contains("Traceback"));
        assert_eq!(e.exception.values[0].ty, "GeneratorError.exception");
        assert_eq!(e.logger.as_deref(), Some("httpsd.generator"));
        let internal = FailedGenerator {
            generator: "a.json".into(),
            error: GeneratorError::new(ErrorKind::Internal, "a.json is not loaded"),
        };
        let e = failure_event("", &Params::empty(), &internal);
        assert_eq!(e.exception.values[0].ty, "InternalError");
        assert_eq!(e.logger.as_deref(), Some("httpsd.internal"));
    }
}
