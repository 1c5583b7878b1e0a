//! Dicts: encoded keys to encoded values, in insertion order.

use std::sync::Mutex;

use super::ordered_map::OrderedMap;
use super::{Ctx, Done, lock, put_bool, put_option, put_seq, put_varint};
use crate::manager::functions;
use crate::manager::protocol::RemoteError;
use crate::manager::protocol::dict::DictOp;

pub(super) fn handle(m: &Mutex<OrderedMap>, op: &DictOp<'_>, cx: &mut Ctx<'_, '_>) -> Result<Done, RemoteError> {
    let mut m = lock(m);
    let out = &mut *cx.out;
    // A table: one line or short block per operation.
    match *op {
        DictOp::Get { key } => put_option(out, m.get(key)),
        DictOp::GetMany { ref keys } => {
            put_varint(out, keys.len() as u64);
            for k in keys {
                put_option(out, m.get(k));
            }
        }
        DictOp::Insert { key, value } => put_option(out, m.insert(key, value.to_vec()).as_deref()),
        DictOp::Set { key, value } => drop(m.insert(key, value.to_vec())),
        DictOp::Remove { key } => put_option(out, m.remove(key).as_deref()),
        DictOp::Contains { key } => put_bool(out, m.contains(key)),
        DictOp::Len => put_varint(out, m.len() as u64),
        DictOp::Keys => put_seq(out, m.len(), m.iter().map(|(k, _)| k)),
        DictOp::Values => put_seq(out, m.len(), m.iter().map(|(_, v)| v)),
        DictOp::Items => {
            put_varint(out, m.len() as u64);
            for (k, v) in m.iter() {
                out.extend_from_slice(k);
                out.extend_from_slice(v);
            }
        }
        DictOp::Update { ref pairs } => {
            for (k, v) in pairs {
                m.insert(k, v.to_vec());
            }
        }
        DictOp::Clear => m.clear(),
        DictOp::Modify { key, tramp, f } => {
            functions::run_modify(cx.peer.same_build, tramp, f, m.get(key), out)?;
            m.insert(key, out.clone());
        }
    }
    Ok(Done::Reply)
}
