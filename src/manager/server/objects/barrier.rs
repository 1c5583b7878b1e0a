//! Barriers: `parties` waiters pass together; a timeout, an abort or a vanished waiter
//! breaks the barrier for everyone, as in Python.

use std::collections::HashMap;
use std::sync::MutexGuard;

use super::common::{Ctx, Done, Guarded, lock, misuse, put_bool, put_varint, wait_while};
use crate::manager::protocol::sync::SyncOp;
use crate::manager::protocol::{RemoteError, Wait};

#[derive(Debug, Default)]
pub(super) struct BarrierState {
    parties: u64,
    count: u64,
    generation: u64,
    broken: bool,
    /// Generations ended by a reset, with how many waiters still have to learn it.
    reset: HashMap<u64, u64>,
}

pub(super) fn new(parties: u64) -> Result<BarrierState, RemoteError> {
    if parties == 0 {
        return Err(misuse("a barrier needs at least one party"));
    }
    Ok(BarrierState { parties, ..BarrierState::default() })
}

pub(super) fn handle(g: &Guarded<BarrierState>, op: &SyncOp, cx: &mut Ctx<'_, '_>) -> Result<Done, RemoteError> {
    match *op {
        SyncOp::BarrierWait { wait } => {
            let index = pass(g, wait, cx)?;
            put_varint(cx.out, index);
        }
        SyncOp::BarrierAbort => {
            lock(&g.state).broken = true;
            g.changed.notify_all();
        }
        SyncOp::BarrierReset => reset(g),
        SyncOp::BarrierState => {
            let st = lock(&g.state);
            put_varint(cx.out, st.parties);
            put_varint(cx.out, st.count);
            put_bool(cx.out, st.broken);
        }
        _ => return Err(cx.wrong(op.target())),
    }
    Ok(Done::Reply)
}

/// Waits until every party has arrived; returns this waiter's arrival index.
fn pass(g: &Guarded<BarrierState>, wait: Wait, cx: &Ctx<'_, '_>) -> Result<u64, RemoteError> {
    let mut st = lock(&g.state);
    if st.broken {
        return Err(RemoteError::BrokenBarrier);
    }
    let index = st.count;
    st.count += 1;
    if st.count == st.parties {
        st.count = 0;
        st.generation += 1;
        g.changed.notify_all();
        return Ok(index);
    }
    let gen_ = st.generation;
    let waited = wait_while(&g.changed, st, wait, cx.peer, |s| s.generation == gen_ && !s.broken);
    let (mut st, passed) = match waited {
        Ok(r) => r,
        Err(e) => {
            // A waiter that vanished breaks the barrier, as a timeout does.
            give_up(g, lock(&g.state), gen_, false);
            return Err(e);
        }
    };
    if st.generation == gen_ {
        give_up(g, st, gen_, passed);
        return Err(RemoteError::BrokenBarrier);
    }
    if left_reset(&mut st, gen_) {
        return Err(RemoteError::BrokenBarrier);
    }
    Ok(index)
}

/// A waiter of generation `gen_` leaves without passing: if its generation still runs, it
/// is no longer counted, and unless the barrier was broken by someone else (`broken_already`)
/// it breaks it (Python: a wait that times out breaks the barrier for everyone).
fn give_up(g: &Guarded<BarrierState>, mut st: MutexGuard<'_, BarrierState>, gen_: u64, broken_already: bool) {
    if st.generation != gen_ {
        left_reset(&mut st, gen_);
        return;
    }
    st.count -= 1;
    if !broken_already {
        st.broken = true;
        g.changed.notify_all();
    }
}

fn reset(g: &Guarded<BarrierState>) {
    let mut st = lock(&g.state);
    if st.count > 0 {
        let (generation, count) = (st.generation, st.count);
        st.reset.insert(generation, count);
    }
    st.generation += 1;
    st.count = 0;
    st.broken = false;
    g.changed.notify_all();
}

/// Counts off a waiter of generation `gen_` if a reset ended it; returns whether one did.
fn left_reset(st: &mut BarrierState, gen_: u64) -> bool {
    let Some(left) = st.reset.get_mut(&gen_) else { return false };
    *left -= 1;
    if *left == 0 {
        st.reset.remove(&gen_);
    }
    true
}
