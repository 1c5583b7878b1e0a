//! Every frame kind in the crate, in one table: which connection carries it and what it
//! means. A kind means something only on its connection, so two connections may use the
//! same value, but the kinds of one connection are distinct (tested below).
//!
//! A new kind is added here first, then used by its connection's module
//! (`wire::handshake`, `pipe`, `pool::local::protocol`, `remote`, `auth`,
//! `manager::protocol`, `manager::slot` all take their kinds from here).

/// Every child connection, first: the process handshake (`wire::handshake`).
pub(crate) const HANDSHAKE_HELLO: u8 = 0xA1;
pub(crate) const HANDSHAKE_REPLY: u8 = 0xA2;

/// A `Pipe` end (`pipe`): a serialized value; raw bytes.
pub(crate) const PIPE_VALUE: u8 = 0x10;
pub(crate) const PIPE_BYTES: u8 = 0x11;

/// A pool's driver and one of its workers (`pool::local::protocol`), after the handshake.
pub(crate) const POOL_SETUP: u8 = 0xB0;
pub(crate) const POOL_TASK: u8 = 0xB1;
pub(crate) const POOL_STOP: u8 = 0xB2;
pub(crate) const POOL_READY: u8 = 0xB3;
pub(crate) const POOL_INIT_FAILED: u8 = 0xB4;
pub(crate) const POOL_RESULT: u8 = 0xB5;
pub(crate) const POOL_RETIRE: u8 = 0xB6;
pub(crate) const POOL_TASK_BIG: u8 = 0xB7;
pub(crate) const POOL_RESULT_BIG: u8 = 0xB8;
pub(crate) const POOL_SKIPPED: u8 = 0xB9;

/// A pool's fork-server template and the pool (`spawn::forkserver`), after the
/// handshake: the preload's outcome, then fork requests (the new child's socket attached)
/// and their answers.
pub(crate) const FORKSERVER_READY: u8 = 0xD0;
pub(crate) const FORKSERVER_FORK: u8 = 0xD1;
pub(crate) const FORKSERVER_FORKED: u8 = 0xD2;
/// The first template starts the guard of its children's cgroups (the pipe that ends
/// it attached) and makes their subtree; its answer.
pub(crate) const FORKSERVER_GUARD: u8 = 0xD3;
pub(crate) const FORKSERVER_GUARDED: u8 = 0xD4;

/// A task child of another machine's task (`remote`), after the handshake.
pub(crate) const TASK_CHILD_RUN: u8 = 0xC1;
pub(crate) const TASK_CHILD_DONE: u8 = 0xC2;

/// A manager server and the process that started it (`manager::protocol`), after the
/// handshake. The same values as the task child's, on another connection.
pub(crate) const MANAGER_SERVER_STARTED: u8 = 0xC1;
pub(crate) const MANAGER_SERVER_FAILED: u8 = 0xC2;
pub(crate) const MANAGER_SERVER_SHUTDOWN: u8 = 0xC3;

/// Authentication (`auth`), first on a manager session and on a `connection::Listener`'s
/// connection when it has a key.
pub(crate) const AUTH_CHALLENGE: u8 = 0xE0;
pub(crate) const AUTH_ANSWER: u8 = 0xE1;
pub(crate) const AUTH_VERDICT: u8 = 0xE2;

/// A manager client's session (`manager::protocol`): authentication, set-up, then
/// requests and replies.
pub(crate) const MANAGER_SESSION_HELLO: u8 = 0xE3;
pub(crate) const MANAGER_SESSION_READY: u8 = 0xE4;
pub(crate) const MANAGER_SLOT_OPEN: u8 = 0xE5;
pub(crate) const MANAGER_OK: u8 = 0xF0;
pub(crate) const MANAGER_ERR: u8 = 0xF1;
pub(crate) const MANAGER_POSTED_ERR: u8 = 0xF2;
/// A reply that did not fit its shared-memory slot (`manager::slot`).
pub(crate) const MANAGER_TOO_BIG: u8 = 0xF3;
/// A request's kind is its operation code (`manager::protocol`), all below this.
pub(crate) const MANAGER_REQUESTS_BELOW: u8 = 0xC0;

/// The kinds of each connection, for the check below and for readers. A manager
/// session's requests are the range `0..MANAGER_REQUESTS_BELOW`.
#[cfg(test)]
pub(crate) const CONNECTIONS: &[(&str, &[u8])] = &[
    ("pipe", &[PIPE_VALUE, PIPE_BYTES]),
    ("listener connection", &[AUTH_CHALLENGE, AUTH_ANSWER, AUTH_VERDICT, PIPE_VALUE, PIPE_BYTES]),
    (
        "pool worker",
        &[
            HANDSHAKE_HELLO,
            HANDSHAKE_REPLY,
            POOL_SETUP,
            POOL_TASK,
            POOL_STOP,
            POOL_READY,
            POOL_INIT_FAILED,
            POOL_RESULT,
            POOL_RETIRE,
            POOL_TASK_BIG,
            POOL_RESULT_BIG,
            POOL_SKIPPED,
        ],
    ),
    (
        "fork server",
        &[
            HANDSHAKE_HELLO,
            HANDSHAKE_REPLY,
            FORKSERVER_READY,
            FORKSERVER_FORK,
            FORKSERVER_FORKED,
            FORKSERVER_GUARD,
            FORKSERVER_GUARDED,
        ],
    ),
    ("task child", &[HANDSHAKE_HELLO, HANDSHAKE_REPLY, TASK_CHILD_RUN, TASK_CHILD_DONE]),
    (
        "manager server start",
        &[HANDSHAKE_HELLO, HANDSHAKE_REPLY, MANAGER_SERVER_STARTED, MANAGER_SERVER_FAILED, MANAGER_SERVER_SHUTDOWN],
    ),
    (
        "manager session",
        &[
            AUTH_CHALLENGE,
            AUTH_ANSWER,
            AUTH_VERDICT,
            MANAGER_SESSION_HELLO,
            MANAGER_SESSION_READY,
            MANAGER_SLOT_OPEN,
            MANAGER_OK,
            MANAGER_ERR,
            MANAGER_POSTED_ERR,
            MANAGER_TOO_BIG,
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_of_one_connection_are_distinct() {
        for (name, kinds) in CONNECTIONS {
            let mut seen = kinds.to_vec();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), kinds.len(), "{name} uses a kind twice: {kinds:#04x?}");
            if *name == "manager session" {
                assert!(kinds.iter().all(|k| *k >= MANAGER_REQUESTS_BELOW), "a {name} kind among the requests");
            }
        }
    }
}
