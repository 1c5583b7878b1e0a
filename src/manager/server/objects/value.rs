//! Values: one encoded value.

use std::sync::Mutex;

use super::common::{Ctx, Done, lock};
use crate::manager::functions;
use crate::manager::protocol::RemoteError;
use crate::manager::protocol::value::ValueOp;

pub(super) fn handle(v: &Mutex<Vec<u8>>, op: &ValueOp<'_>, cx: &mut Ctx<'_, '_>) -> Result<Done, RemoteError> {
    let mut v = lock(v);
    match *op {
        ValueOp::Get => cx.out.extend_from_slice(&v),
        ValueOp::Set { value } => {
            cx.held.stored(value);
            cx.held.dropped(&std::mem::replace(&mut *v, value.to_vec()));
        }
        ValueOp::Modify { tramp, f } => {
            functions::run_modify(cx.peer.same_build, tramp, f, Some(&v), cx.out)?;
            cx.held.stored(cx.out);
            cx.held.dropped(&std::mem::replace(&mut *v, cx.out.clone()));
        }
    }
    Ok(Done::Reply)
}
