//! When the process that owns a pool is SIGKILLed, every worker exits too: nothing is
//! left behind (Python leaves `ProcessPoolExecutor` workers running as orphans).

use std::time::Duration;

use multiproc::{Pool, Process};

multiproc::test_init!();

fn double(x: u64) -> u64 {
    x * 2
}

fn nothing(_: ()) {}

/// In a child: start a pool, note its workers' pids, then die by SIGKILL.
fn own_a_pool_then_die(path: String) {
    // With an initializer, `build` returns once every worker has run it, so both pids
    // are known (without one it returns when the first worker is up).
    let pool = Pool::builder().processes(2).initializer(nothing, ()).build().unwrap();
    assert_eq!(pool.apply(double, 1).unwrap(), 2);
    let pids: Vec<String> = pool.stats().worker_pids.iter().map(u32::to_string).collect();
    std::fs::write(&path, pids.join(" ")).unwrap();
    let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn workers_die_with_their_pool_s_owner() {
    let path = std::env::temp_dir().join(format!("multiproc-pool-owner-{}", std::process::id()));
    let path = path.to_string_lossy().into_owned();
    let mut owner = Process::new(own_a_pool_then_die, path.clone());
    owner.start().unwrap();
    owner.join().unwrap();
    assert_eq!(owner.exitcode(), Some(-9));
    let pids: Vec<i32> =
        std::fs::read_to_string(&path).unwrap().split_whitespace().map(|p| p.parse().unwrap()).collect();
    let _ = std::fs::remove_file(&path);
    assert_eq!(pids.len(), 2);
    for pid in pids {
        let Some(pid) = rustix::process::Pid::from_raw(pid) else { continue };
        // A pidfd is readable once the process has exited; an error means it is gone already.
        let Ok(fd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else { continue };
        let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
        let limit = rustix::event::Timespec { tv_sec: 20, tv_nsec: 0 };
        let ready = rustix::event::poll(&mut fds, Some(&limit)).unwrap();
        assert_eq!(ready, 1, "worker {pid:?} outlived its pool's owner");
    }
}
