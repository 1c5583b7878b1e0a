//! Objects of the user's own types (`SharedObject`), built and called through functions
//! the client names.

use std::any::Any;
use std::sync::Mutex;

use super::common::{Ctx, Done, Peer, lock};
use crate::manager::functions;
use crate::manager::protocol::RemoteError;
use crate::manager::protocol::custom::CustomOp;

/// The user's object; `None` once dropped.
pub(super) type Custom = Box<dyn Any + Send>;

pub(super) fn new(peer: &Peer<'_>, ctor: i64, init: &[u8]) -> Result<Custom, RemoteError> {
    functions::run_create(peer.same_build, ctor, init)
}

pub(super) fn handle(m: &Mutex<Option<Custom>>, op: &CustomOp<'_>, cx: &mut Ctx<'_, '_>) -> Result<Done, RemoteError> {
    match *op {
        CustomOp::Call { tramp, method, arg } => {
            let mut obj = lock(m);
            let obj = obj.as_mut().ok_or(RemoteError::UnknownObject(cx.id))?;
            functions::run_call(cx.peer.same_build, tramp, method, obj.as_mut(), arg, cx.out)?;
        }
    }
    Ok(Done::Reply)
}

/// Drops the user's object, keeping a panic in its `Drop` from taking the server down.
pub(super) fn drop_object(m: &mut Mutex<Option<Custom>>) {
    if let Some(obj) = m.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
        functions::drop_quietly(obj);
    }
}
