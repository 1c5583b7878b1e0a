//! What a hostile task does to its own worker's sockets (shared by the tests that attack
//! them; each test file is its own crate, so this is a module of each).

use std::os::fd::OwnedFd;

use rustix::process::{PidfdFlags, PidfdGetfdFlags, getpid, pidfd_getfd, pidfd_open};

/// Calls `f` with a duplicate of every socket this process holds: a duplicate (taken
/// through a pidfd of this very process) reaches the same socket without borrowing a raw
/// descriptor number.
pub fn each_own_socket(mut f: impl FnMut(OwnedFd)) {
    let me = pidfd_open(getpid(), PidfdFlags::empty()).unwrap();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_socket =
            std::fs::read_link(entry.path()).is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        if is_socket && let Ok(dup) = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()) {
            f(dup);
        }
    }
}
