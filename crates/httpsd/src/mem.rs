//! Giving memory back to the system after a big load or run (issue 19).
//!
//! glibc's malloc keeps freed memory in its arenas for reuse, so after parsing a big
//! document the process would stay as large as its peak for as long as it runs.
//! `malloc_trim(0)` returns the free pages of every arena. We call it ourselves
//! (rather than switching the global allocator to jemalloc or mimalloc) because it is
//! one libc call, adds no C build to the crate, and only runs after the rare big
//! loads: measured in docs/BENCHMARKS.md ("Fleet scale"). This is the one module,
//! besides the Python workers' pre-exec hook, that needs `unsafe`.

/// Loads and runs that produced at least this many bytes trim afterwards: below it the
/// memory freed is small and a trim (a walk of every arena) is not worth its cost.
pub const TRIM_AFTER_BYTES: usize = 4 << 20;

/// Returns freed heap memory to the system when `bytes` (what a load or run just
/// handled) reaches [`TRIM_AFTER_BYTES`]. Blocking for a few milliseconds on a big heap.
pub fn trim_after(bytes: usize) {
    if bytes >= TRIM_AFTER_BYTES {
        trim();
    }
}

/// Returns freed heap memory to the system now.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no
    // pointers from us and is thread-safe (it locks each arena).
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// Returns freed heap memory to the system now (a no-op off glibc, whose allocators
/// return memory on their own).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}
