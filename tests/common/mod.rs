//! Helpers shared by the integration tests (each test file is its own crate).

/// No pid in `pids` is still a child of this process (running or zombie).
pub fn assert_gone(pids: &[u32]) {
    let me = std::process::id();
    for pid in pids {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The parent pid is the second field after the command name in parentheses.
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let ppid: u32 = after.split_whitespace().nth(1).unwrap().parse().unwrap();
            assert_ne!(ppid, me, "worker {pid} is still our child: {stat}");
        }
    }
}
