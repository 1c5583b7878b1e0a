//! A task that shuts down its worker's connection to the pool costs that one worker: the
//! pool's other workers go on. Found by the tour: in a release build, about half the runs
//! of a pool of two where one task cuts its socket counted two workers that exited with
//! code 0 (one not charged to any task), not one. Ignored until that is fixed; run it with
//! `cargo test --release --test pool_task_cutting_its_socket_costs_one_worker -- --ignored`.

multiproc::test_init!();

/// Shuts down every socket of this process, through duplicates taken by pidfd.
fn shut_down_own_sockets() {
    use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};
    let Ok(me) = pidfd_open(getpid(), PidfdFlags::empty()) else { return };
    for entry in std::fs::read_dir("/proc/self/fd").into_iter().flatten().flatten() {
        let is_socket = std::fs::read_link(entry.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if is_socket && let Ok(dup) = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()) {
            let _ = rustix::net::shutdown(dup, rustix::net::Shutdown::Both);
        }
    }
}

fn job(cut: bool) -> u32 {
    if cut {
        shut_down_own_sockets();
    }
    std::process::id()
}

#[test]
#[ignore = "an extra worker exits with code 0 in about half the release-build runs (see the file's header)"]
fn one_cut_socket_one_dead_worker() {
    let mut extra = Vec::new();
    for round in 0..20 {
        let pool = multiproc::Pool::builder().processes(2).build().unwrap();
        let handles: Vec<_> = (0..9).map(|i| pool.apply_async(job, i == 1)).collect();
        let outcomes: Vec<bool> = handles.into_iter().map(|h| h.get().is_ok()).collect();
        assert_eq!(outcomes.iter().filter(|ok| !**ok).count(), 1, "round {round}: {outcomes:?}");
        let s = pool.stats();
        if s.workers_died != 1 {
            extra.push((round, s.died_by_exit_code.clone(), s.died_by_signal.clone()));
        }
        pool.close();
        pool.join().unwrap();
    }
    assert!(extra.is_empty(), "rounds where more than the one worker died: {extra:?}");
}
