//! Scale-out over Redis: `server-only` (stateless HTTP servers that answer from Redis
//! and queue work) and `worker-only` (processes that run generators with the same
//! engine as `serve` and store the results). See docs/scale-out.md.
//!
//! - [`frontend`]: `server-only`'s HTTP API (answers from Redis, queues jobs).
//! - [`worker`]: `worker-only`'s job loops and its metrics server.
//! - [`store`], [`keys`], [`conn`], [`health`]: the Redis data model, key names,
//!   connections and the health monitor both commands use.

pub mod conn;
pub mod frontend;
pub mod health;
pub mod keys;
pub mod store;
pub mod worker;

use std::process::ExitCode;

use crate::security::SecuritySettings;

/// Runs `server-only` on `host:port` until SIGTERM or Ctrl-C.
pub fn run_server(
    settings: frontend::ServerSettings,
    security: SecuritySettings,
    host: &str,
    port: u16,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let addr = format!("{host}:{port}");
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        frontend::run(
            settings,
            security,
            listener,
            crate::listener::shutdown_signal(),
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `worker-only` until SIGTERM or Ctrl-C, its metrics server on `host:port`.
pub fn run_worker(
    settings: worker::WorkerSettings,
    security: SecuritySettings,
    host: &str,
    port: u16,
) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let addr = format!("{host}:{port}");
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (worker metrics): {e}"))?;
        worker::run(
            settings,
            security,
            listener,
            crate::listener::shutdown_signal(),
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}
