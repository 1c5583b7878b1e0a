//! Code the loader runs before `main`: the one `.init_array` entry behind both crates'
//! `test_init!` macros.
//!
//! A test binary's `main` belongs to the test harness, so a child started from a test can
//! only become a worker if `init()` runs before that `main`. Placing a function pointer in
//! `.init_array` is an `unsafe` attribute; keeping the macro here keeps the crate's
//! `unsafe` in this layer, and the macros above it safe to call.

/// Runs each given `fn()` path once, in order, before `main` (through `.init_array`).
///
/// Not an API: the expansion of `multiproc::test_init!` and `multiproc_nats::test_init!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __run_before_main {
    ($($init:path),+ $(,)?) => {
        const _: () = {
            extern "C" fn __multiproc_run_before_main() {
                $($init();)+
            }
            // SAFETY: an `.init_array` entry is a plain `extern "C" fn()` the loader calls
            // once before `main`; it only calls the given `init` functions, which need
            // nothing `main` sets up.
            #[used]
            #[unsafe(link_section = ".init_array")]
            static __MULTIPROC_RUN_BEFORE_MAIN: extern "C" fn() = __multiproc_run_before_main;
        };
    };
}

// Unit tests start real children too.
#[cfg(test)]
crate::__run_before_main!(crate::init);
