//! Locks and reentrant locks, owned by a thread of a client process.

use super::common::{Ctx, Done, Guarded, Owner, lock, misuse, put_bool, wait_while};
use crate::manager::protocol::sync::SyncOp;
use crate::manager::protocol::{Kind, RemoteError, Wait};

#[derive(Debug, Default)]
pub(super) struct LockState {
    pub(super) owner: Option<Owner>,
    pub(super) depth: u32,
}

pub(super) fn handle(g: &Guarded<LockState>, op: &SyncOp, cx: &mut Ctx<'_, '_>) -> Result<Done, RemoteError> {
    match *op {
        SyncOp::Acquire { thread, wait } => acquire(g, thread, wait, cx)?,
        SyncOp::Release { thread } => release(g, thread, cx)?,
        _ => return Err(cx.wrong(op.target())),
    }
    Ok(Done::Reply)
}

fn acquire(g: &Guarded<LockState>, thread: u64, wait: Wait, cx: &mut Ctx<'_, '_>) -> Result<(), RemoteError> {
    let me = (cx.peer.session, thread);
    let reentrant = cx.kind == Kind::RLock;
    let st = lock(&g.state);
    let (mut st, ok) =
        wait_while(&g.changed, st, wait, cx.peer, |s| s.owner.is_some() && !(reentrant && s.owner == Some(me)))?;
    if ok {
        st.owner = Some(me);
        st.depth += 1;
    }
    put_bool(cx.out, ok);
    Ok(())
}

fn release(g: &Guarded<LockState>, thread: u64, cx: &Ctx<'_, '_>) -> Result<(), RemoteError> {
    let me = (cx.peer.session, thread);
    let mut st = lock(&g.state);
    match st.owner {
        None => return Err(misuse("release of an unlocked lock")),
        // Python lets any thread release a plain Lock; an RLock only its owner.
        Some(o) if cx.kind == Kind::RLock && o != me => {
            return Err(misuse("cannot release an rlock held by another thread or process"));
        }
        Some(_) => {}
    }
    st.depth -= 1;
    if st.depth == 0 || cx.kind == Kind::Lock {
        st.owner = None;
        st.depth = 0;
        g.changed.notify_one();
    }
    Ok(())
}

/// Releases the lock if `session` holds it (its process is gone).
pub(super) fn release_session(g: &Guarded<LockState>, session: [u8; 16]) {
    let mut st = lock(&g.state);
    if st.owner.is_some_and(|o| o.0 == session) {
        st.owner = None;
        st.depth = 0;
        g.changed.notify_all();
    }
}
