//! Archiver tests (todo).
