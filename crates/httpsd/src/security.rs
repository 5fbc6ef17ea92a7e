//! TLS and authentication of the HTTP endpoints (placeholder until the operators'
//! issue lands).

/// TLS and authentication options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecurityArgs {}
