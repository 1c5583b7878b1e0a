//! Semaphores, optionally bounded by their initial value.

use super::common::{Ctx, Done, Guarded, lock, misuse, put_bool, put_varint, wait_while};
use crate::manager::protocol::RemoteError;
use crate::manager::protocol::sync::SyncOp;

#[derive(Debug)]
pub(super) struct SemState {
    value: u64,
    ceiling: Option<u64>,
}

pub(super) fn new(value: u64, bounded: bool) -> SemState {
    SemState { value, ceiling: bounded.then_some(value) }
}

pub(super) fn handle(g: &Guarded<SemState>, op: &SyncOp, cx: &mut Ctx<'_, '_>) -> Result<Done, RemoteError> {
    match *op {
        SyncOp::Acquire { wait, .. } => {
            let (mut st, ok) = wait_while(&g.changed, lock(&g.state), wait, cx.peer, |s| s.value == 0)?;
            if ok {
                st.value -= 1;
            }
            put_bool(cx.out, ok);
        }
        SyncOp::Release { .. } => {
            let mut st = lock(&g.state);
            if st.ceiling.is_some_and(|c| st.value >= c) {
                return Err(misuse("a bounded semaphore was released too many times"));
            }
            st.value += 1;
            g.changed.notify_one();
        }
        SyncOp::SemValue => put_varint(cx.out, lock(&g.state).value),
        _ => return Err(cx.wrong(op.target())),
    }
    Ok(Done::Reply)
}
