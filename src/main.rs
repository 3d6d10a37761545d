//! The `spanline` binary: the built-in components behind the command line.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    spanline::allocator::tune();
    spanline::cli::main_with(spanline::registry::Registry::builtin())
}
