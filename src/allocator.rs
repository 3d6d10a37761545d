//! Settings of the allocator the `spanline` binary (and the benchmarks) run with.

/// mimalloc (v3) option index of `purge_delay` in `mi_option_t`.
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory 10 s before returning it to the OS, unless `MIMALLOC_PURGE_DELAY`
/// says otherwise. The trace store frees and refills hundreds of MiB for every block it
/// writes, and a search decodes tens of MiB of columns; with mimalloc's default that memory
/// went back to the OS at once and was faulted (and zeroed) in again by the next block or
/// query: a third of the store's CPU. An idle or shrinking process still returns it.
/// Does nothing without the `mimalloc` feature.
pub fn tune() {
    #[cfg(feature = "mimalloc")]
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide option; mimalloc reads it on its next purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10_000) };
    }
}
