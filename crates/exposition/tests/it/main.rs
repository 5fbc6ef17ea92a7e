//! Integration tests of the exposition crate: byte-for-byte oracle tests against the real
//! Python prometheus_client, validator tests per error class, property tests.

mod common;
mod encoder;
mod oracle;
mod props;
mod validator;
