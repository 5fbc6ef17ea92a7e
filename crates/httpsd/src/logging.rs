//! Log setup: the original's `--log-level` (Python numeric levels or names), text or
//! JSON lines, and `RUST_LOG` when set. Error events also go to Sentry when a
//! Sentry client is configured (the layer does nothing otherwise).

use std::str::FromStr;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// A log level given the Python way (`10`, `20`, `warning`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLevel(pub tracing::Level);

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use tracing::Level;
        let level = if let Ok(n) = s.trim().parse::<i64>() {
            match n {
                i64::MIN..=-1 | 51.. => {
                    return Err(format!(
                        "{n} is not a log level (0-50, as in Python's logging)"
                    ));
                }
                0..=10 => Level::DEBUG,
                11..=20 => Level::INFO,
                21..=30 => Level::WARN,
                31..=50 => Level::ERROR,
            }
        } else {
            match s.trim().to_ascii_lowercase().as_str() {
                "notset" | "trace" => Level::TRACE,
                "debug" => Level::DEBUG,
                "info" => Level::INFO,
                "warning" | "warn" => Level::WARN,
                "error" | "critical" | "fatal" => Level::ERROR,
                other => {
                    return Err(format!(
                        "unknown log level {other:?}; use 10/20/30/40/50 or debug/info/warning/error/critical"
                    ));
                }
            }
        };
        Ok(LogLevel(level))
    }
}

/// Log line format (`--log-format`, parsed by `cli`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `level`.
///
/// Lines go to stderr through [`crate::log_writer`] (batched; warnings at once). Keep
/// the returned guard alive until the program ends: its drop writes what is left.
pub fn init(level: LogLevel, format: LogFormat) -> crate::log_writer::FlushGuard {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(level.0.to_string().to_lowercase()));
    let (writer, guard) = crate::log_writer::batched_stderr();
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        // Access-log lines would only crowd Sentry's breadcrumbs (and cost a field
        // visit per request).
        .with(
            sentry::integrations::tracing::layer()
                .with_filter(filter_fn(|m| m.target() != "httpsd::access")),
        )
        .try_init();
    guard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_levels() {
        assert_eq!("10".parse::<LogLevel>().unwrap().0, tracing::Level::DEBUG);
        assert_eq!("20".parse::<LogLevel>().unwrap().0, tracing::Level::INFO);
        assert_eq!(
            "WARNING".parse::<LogLevel>().unwrap().0,
            tracing::Level::WARN
        );
        assert_eq!("50".parse::<LogLevel>().unwrap().0, tracing::Level::ERROR);
        assert!("99".parse::<LogLevel>().is_err());
        assert!("loud".parse::<LogLevel>().is_err());
    }
}
