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
