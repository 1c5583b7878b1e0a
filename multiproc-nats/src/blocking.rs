//! The blocking API called from async code: work that starts a runtime of its own and
//! blocks on it moves to a helper thread when the caller is inside a tokio runtime.

/// Runs `f`, which starts a runtime of its own and blocks on it, where that is allowed:
/// here, or, when this thread is inside a tokio runtime (where `block_on` panics with
/// "Cannot start a runtime from within a runtime"), on a helper thread, waited for. So
/// the blocking API works from async code too; it blocks the calling task's thread
/// meanwhile, like any blocking call (`spawn_blocking` avoids that).
pub(crate) fn outside_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| {
        let helper = std::thread::Builder::new().name("multiproc-nats-blocking".into()).spawn_scoped(s, f);
        match helper {
            Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            // No thread to spare: say so (blocking here would panic inside tokio anyway).
            Err(_) => panic!("multiproc-nats: cannot start a helper thread to block on outside the runtime"),
        }
    })
}
