//! Events: a flag that waiters wait to see set.

use super::common::{Ctx, Done, Guarded, lock, put_bool, wait_while};
use crate::manager::protocol::RemoteError;
use crate::manager::protocol::sync::SyncOp;

pub(super) fn handle(g: &Guarded<bool>, op: &SyncOp, cx: &mut Ctx<'_, '_>) -> Result<Done, RemoteError> {
    match *op {
        SyncOp::EventSet => {
            *lock(&g.state) = true;
            g.changed.notify_all();
        }
        SyncOp::EventClear => *lock(&g.state) = false,
        SyncOp::EventIsSet => put_bool(cx.out, *lock(&g.state)),
        SyncOp::EventWait { wait } => {
            let (_set, ok) = wait_while(&g.changed, lock(&g.state), wait, cx.peer, |set| !*set)?;
            put_bool(cx.out, ok);
        }
        _ => return Err(cx.wrong(op.target())),
    }
    Ok(Done::Reply)
}
