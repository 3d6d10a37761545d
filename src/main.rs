//! The `spanline` binary: the built-in components behind the command line.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc (v3) option index of `purge_delay` in `mi_option_t`.
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The trace store frees and refills hundreds of MiB for every block it writes. With
/// mimalloc's default, that memory went back to the OS a second after it was freed and was
/// faulted (and zeroed) in again for the next block: a third of the store's CPU. Kept for
/// 10 s it is reused; an idle or shrinking process still returns it.
#[cfg(feature = "mimalloc")]
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide option; mimalloc reads it on its next purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10_000) };
    }
}

fn main() -> std::process::ExitCode {
    #[cfg(feature = "mimalloc")]
    tune_allocator();
    spanline::cli::main_with(spanline::registry::Registry::builtin())
}
