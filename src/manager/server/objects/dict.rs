//! Dicts: encoded keys to encoded values, in insertion order.

use std::sync::Mutex;

use super::common::{Ctx, Done, lock, misuse, put_bool, put_option, put_seq, put_varint};
use super::ordered_map::OrderedMap;
use crate::manager::functions;
use crate::manager::protocol::RemoteError;
use crate::manager::protocol::dict::{DictOp, ITER_START};

pub(super) fn handle(m: &Mutex<OrderedMap>, op: &DictOp<'_>, cx: &mut Ctx<'_, '_>) -> Result<Done, RemoteError> {
    let mut m = lock(m);
    let (out, held) = (&mut *cx.out, cx.held);
    // A table: one line or short block per operation.
    match *op {
        DictOp::Get { key } => put_option(out, m.get(key)),
        DictOp::GetMany { ref keys } => {
            put_varint(out, keys.len() as u64);
            for k in keys {
                put_option(out, m.get(k));
            }
        }
        DictOp::Insert { key, value } => {
            held.stored(value);
            let old = m.insert(key, value.to_vec());
            old.iter().for_each(|v| held.taken(v));
            put_option(out, old.as_deref());
        }
        DictOp::Set { key, value } => {
            held.stored(value);
            m.insert(key, value.to_vec()).iter().for_each(|v| held.dropped(v));
        }
        DictOp::Remove { key } => {
            let old = m.remove(key);
            old.iter().for_each(|v| held.taken(v));
            put_option(out, old.as_deref());
        }
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
                held.stored(v);
                m.insert(k, v.to_vec()).iter().for_each(|v| held.dropped(v));
            }
        }
        DictOp::Clear => {
            m.iter().for_each(|(_, v)| held.dropped(v));
            m.clear();
        }
        DictOp::Modify { key, tramp, f } => {
            functions::run_modify(cx.peer.same_build, tramp, f, m.get(key), out)?;
            held.stored(out);
            m.insert(key, out.clone()).iter().for_each(|v| held.dropped(v));
        }
        DictOp::KeysFrom { version, from, max } => {
            if version != ITER_START && version != m.version() {
                return Err(misuse("dictionary changed size during iteration"));
            }
            let (keys, next, end) = m.keys_from(usize::try_from(from).unwrap_or(usize::MAX), max as usize);
            put_varint(out, m.version());
            put_varint(out, next as u64);
            put_bool(out, end);
            put_seq(out, keys.len(), keys.into_iter());
        }
    }
    Ok(Done::Reply)
}
