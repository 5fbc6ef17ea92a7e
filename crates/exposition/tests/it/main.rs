//! Integration tests of the exposition crate.
