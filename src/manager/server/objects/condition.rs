//! Condition variables, each with its own reentrant lock.

use std::collections::{HashSet, VecDeque};

use super::common::{Ctx, Done, Guarded, Owner, lock, misuse, put_bool, wait_while};
use super::lock::LockState;
use crate::manager::protocol::sync::SyncOp;
use crate::manager::protocol::{RemoteError, Wait};

#[derive(Debug, Default)]
pub(super) struct CondState {
    lock: LockState,
    /// Tickets of the waiters, in the order they began waiting.
    waiting: VecDeque<u64>,
    /// Tickets notified and not yet woken.
    notified: HashSet<u64>,
    next_ticket: u64,
}

pub(super) fn handle(g: &Guarded<CondState>, op: &SyncOp, cx: &mut Ctx<'_, '_>) -> Result<Done, RemoteError> {
    let session = cx.peer.session;
    match *op {
        SyncOp::Acquire { thread, wait } => {
            let ok = acquire(g, (session, thread), wait, cx)?;
            put_bool(cx.out, ok);
        }
        SyncOp::Release { thread } => release(g, (session, thread))?,
        SyncOp::CondWait { thread, wait } => {
            let notified = wait_notified(g, (session, thread), wait, cx)?;
            put_bool(cx.out, notified);
        }
        SyncOp::CondNotify { thread, n } => notify(g, (session, thread), n)?,
        _ => return Err(cx.wrong(op.target())),
    }
    Ok(Done::Reply)
}

fn acquire(g: &Guarded<CondState>, me: Owner, wait: Wait, cx: &Ctx<'_, '_>) -> Result<bool, RemoteError> {
    let (mut st, ok) =
        wait_while(&g.changed, lock(&g.state), wait, cx.peer, |s| s.lock.owner.is_some() && s.lock.owner != Some(me))?;
    if ok {
        st.lock.owner = Some(me);
        st.lock.depth += 1;
    }
    Ok(ok)
}

fn release(g: &Guarded<CondState>, me: Owner) -> Result<(), RemoteError> {
    let mut st = lock(&g.state);
    if st.lock.owner != Some(me) {
        return Err(misuse("cannot release a condition this thread does not hold"));
    }
    st.lock.depth -= 1;
    if st.lock.depth == 0 {
        st.lock.owner = None;
        g.changed.notify_all();
    }
    Ok(())
}

/// Python's `wait`: gives the lock up, waits to be notified (or for `wait` to pass),
/// then takes the lock back at its depth. Returns whether it was notified.
fn wait_notified(g: &Guarded<CondState>, me: Owner, wait: Wait, cx: &Ctx<'_, '_>) -> Result<bool, RemoteError> {
    let mut st = lock(&g.state);
    if st.lock.owner != Some(me) {
        return Err(misuse("cannot wait on a condition this thread does not hold"));
    }
    let depth = std::mem::take(&mut st.lock.depth);
    st.lock.owner = None;
    let ticket = st.next_ticket;
    st.next_ticket += 1;
    st.waiting.push_back(ticket);
    g.changed.notify_all();
    let waited = wait_while(&g.changed, st, wait, cx.peer, |s| !s.notified.contains(&ticket));
    let (mut st, notified) = match waited {
        Ok(r) => r,
        Err(e) => {
            forget_ticket(&mut lock(&g.state), ticket);
            return Err(e);
        }
    };
    forget_ticket(&mut st, ticket);
    // Take the lock back before returning, as Python's `wait` does.
    let (mut st, _) = wait_while(&g.changed, st, Wait::Forever, cx.peer, |s| s.lock.owner.is_some())?;
    st.lock.owner = Some(me);
    st.lock.depth = depth;
    Ok(notified)
}

fn forget_ticket(st: &mut CondState, ticket: u64) {
    st.waiting.retain(|&t| t != ticket);
    st.notified.remove(&ticket);
}

fn notify(g: &Guarded<CondState>, me: Owner, n: u64) -> Result<(), RemoteError> {
    let mut st = lock(&g.state);
    if st.lock.owner != Some(me) {
        return Err(misuse("cannot notify on a condition this thread does not hold"));
    }
    for _ in 0..n {
        let Some(t) = st.waiting.pop_front() else { break };
        st.notified.insert(t);
    }
    g.changed.notify_all();
    Ok(())
}

/// Releases the condition's lock if `session` holds it (its process is gone).
pub(super) fn release_session(g: &Guarded<CondState>, session: [u8; 16]) {
    let mut st = lock(&g.state);
    if st.lock.owner.is_some_and(|o| o.0 == session) {
        st.lock.owner = None;
        st.lock.depth = 0;
        g.changed.notify_all();
    }
}
