//! Whether this worker may run a task message, and what it says of tasks it will never
//! receive: the decisions, apart from the broker.
//!
//! Tasks travel on their build's subject, so a worker receives only its own build's. A
//! task of another build (or protocol version) that reaches it all the same is never run:
//! its function offsets mean something only in the binary that made them. The worker
//! answers its client with the reason instead; a message too damaged to name its client
//! is only removed.

use crate::envelope::{PROTOCOL, RanOn, RemoteError, TaskAddress, TaskHead};

/// What to do with a task message.
#[derive(Debug)]
pub(super) enum Admission {
    /// Run it: its head, and where its items' arguments start in the payload.
    Run { head: TaskHead, args_at: usize },
    /// Do not run it; tell its client why, then terminate the message.
    Refuse { task_id: u64, reply_to: String, error: RemoteError, log: Option<String> },
    /// Not even its client can be named: terminate the message.
    Drop { log: String },
}

/// Reads a task's head and decides whether a worker `me` of build `fingerprint` may run
/// it. A refusal carries the line the worker logs, when there is one.
pub(super) fn admit(payload: &[u8], fingerprint: u64, me: &RanOn) -> Admission {
    let address = match postcard::take_from_bytes::<TaskAddress>(payload) {
        Ok((a, _)) => a,
        Err(e) => return Admission::Drop { log: format!("removing an unreadable task from the queue: {e}") },
    };
    if address.version != PROTOCOL {
        let log = format!(
            "refusing task {} from {}: it speaks cluster protocol {}, this worker {PROTOCOL}",
            address.task_id, address.reply_to, address.version
        );
        let error = RemoteError::Version {
            host: me.host.clone(),
            worker_pid: me.worker_pid,
            client: address.version,
            worker: PROTOCOL,
        };
        return Admission::Refuse { task_id: address.task_id, reply_to: address.reply_to, error, log: Some(log) };
    }
    let (head, arg) = match TaskHead::decode(payload) {
        Ok(v) => v,
        Err(e) => {
            let error = RemoteError::Codec { message: format!("the worker cannot read the task: {e}") };
            return Admission::Refuse { task_id: address.task_id, reply_to: address.reply_to, error, log: None };
        }
    };
    if head.fingerprint != fingerprint {
        return wrong_binary(head, fingerprint, me);
    }
    let args_at = payload.len() - arg.len();
    Admission::Run { head, args_at }
}

fn wrong_binary(head: TaskHead, fingerprint: u64, me: &RanOn) -> Admission {
    let log = format!(
        "refusing task {} (`{}`) from {}: it was built by another binary (fingerprint {:016x}) than this \
         worker ({:016x}); reporting WrongBinary to its client and removing it from the queue",
        head.task_id, head.function_name, head.reply_to, head.fingerprint, fingerprint
    );
    let error = RemoteError::WrongBinary {
        host: me.host.clone(),
        worker_pid: me.worker_pid,
        client: head.fingerprint,
        worker: fingerprint,
    };
    Admission::Refuse { task_id: head.task_id, reply_to: head.reply_to, error, log: Some(log) }
}

/// What an idle worker of build `build` says when tasks of other builds wait in the
/// queue (`waiting`: task subject and message count, its last token the build): none of
/// them will ever come to it. `None` when there are none.
pub(super) fn other_builds_notice(build: u64, waiting: &[(String, usize)]) -> Option<String> {
    let own = format!("{build:016x}");
    let mut others: Vec<(&str, usize)> = waiting
        .iter()
        .filter(|(_, n)| *n > 0)
        .filter_map(|(subject, n)| subject.rsplit('.').next().map(|b| (b, *n)))
        .filter(|(b, _)| *b != own)
        .collect();
    if others.is_empty() {
        return None;
    }
    others.sort();
    let total: usize = others.iter().map(|(_, n)| n).sum();
    let each: Vec<String> = others.iter().map(|(b, n)| format!("{n} of build {b}")).collect();
    Some(format!(
        "{total} tasks wait in the queue for workers of other builds ({}); this worker is build {own} and \
         takes only its own build's tasks: start workers from the binary that submits them",
        each.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_worker_names_the_builds_whose_tasks_wait() {
        let waiting = |v: &[(&str, usize)]| v.iter().map(|(s, n)| (s.to_string(), *n)).collect::<Vec<_>>();
        assert_eq!(other_builds_notice(0xab, &[]), None);
        assert_eq!(other_builds_notice(0xab, &waiting(&[("mproc.p.tasks.00000000000000ab", 5)])), None);
        let notice = other_builds_notice(
            0xab,
            &waiting(&[
                ("mproc.p.tasks.00000000000000ab", 5),
                ("mproc.p.tasks.00000000000000cd", 3),
                ("mproc.p.tasks.00000000000000ef", 0),
            ]),
        )
        .unwrap();
        assert!(
            notice.starts_with("3 tasks wait in the queue for workers of other builds (3 of build 00000000000000cd)")
        );
        assert!(notice.contains("this worker is build 00000000000000ab"), "{notice}");
    }

    fn me() -> RanOn {
        RanOn { host: "node1".into(), worker_pid: 10, process_pid: None }
    }

    fn head(version: u16, fingerprint: u64) -> TaskHead {
        TaskHead {
            version,
            task_id: 7,
            reply_to: "mproc.p.results.c".into(),
            fingerprint,
            function: 1,
            trampoline: 2,
            function_name: "app::work".into(),
            timeout_ms: None,
            retries: 0,
            items: 1,
            chunk: 1,
            args_object: None,
        }
    }

    #[test]
    fn a_task_of_this_build_runs_with_its_arguments_where_they_start() {
        let payload = head(PROTOCOL, 0xab).encode(&[1, 2, 3]);
        match admit(&payload, 0xab, &me()) {
            Admission::Run { head, args_at } => {
                assert_eq!(head.task_id, 7);
                assert_eq!(&payload[args_at..], [1, 2, 3]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_task_of_another_build_is_refused_naming_both_builds() {
        let payload = head(PROTOCOL, 0xab).encode(&[]);
        match admit(&payload, 0xcd, &me()) {
            Admission::Refuse { task_id: 7, reply_to, error, log: Some(log) } => {
                assert_eq!(reply_to, "mproc.p.results.c");
                assert_eq!(
                    error,
                    RemoteError::WrongBinary { host: "node1".into(), worker_pid: 10, client: 0xab, worker: 0xcd }
                );
                assert!(log.contains("another binary") && log.contains("app::work"), "{log}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_task_of_another_protocol_is_refused_by_its_address_alone() {
        let payload = head(PROTOCOL + 1, 0xab).encode(&[]);
        match admit(&payload, 0xab, &me()) {
            Admission::Refuse { error: RemoteError::Version { client, worker, .. }, log: Some(_), .. } => {
                assert_eq!((client, worker), (PROTOCOL + 1, PROTOCOL));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_damaged_task_is_refused_or_dropped_never_run() {
        let payload = head(PROTOCOL, 0xab).encode(&[]);
        // Cut after the address: the client can still be told.
        let cut = &payload[..payload.len() - 3];
        assert!(matches!(admit(cut, 0xab, &me()), Admission::Refuse { error: RemoteError::Codec { .. }, .. }));
        assert!(matches!(admit(&[], 0xab, &me()), Admission::Drop { .. }));
    }
}
