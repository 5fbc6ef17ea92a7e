//! Integration tests of the pool with a real `python3`: calls, import modes, deadlines,
//! crashes, output capture, memory limit and batches.

mod affinity;
mod calls;
mod failures;
mod support;
