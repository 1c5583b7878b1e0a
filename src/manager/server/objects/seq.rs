//! Lists and arrays: sequences of encoded values (an array's length is fixed).

use std::sync::Mutex;

use super::common::{Ctx, Done, lock, misuse, put_option, put_seq, put_varint};
use crate::manager::functions;
use crate::manager::protocol::seq::SeqOp;
use crate::manager::protocol::{Kind, RemoteError};

pub(super) fn new(items: Vec<&[u8]>) -> Vec<Vec<u8>> {
    items.into_iter().map(<[u8]>::to_vec).collect()
}

fn index(i: u64, len: usize) -> Result<usize, RemoteError> {
    if i < len as u64 { Ok(i as usize) } else { Err(RemoteError::IndexOutOfRange { index: i, len: len as u64 }) }
}

/// Whether the operation changes the sequence's length (which an array refuses).
fn resizes(op: &SeqOp<'_>) -> bool {
    use SeqOp as S;
    match op {
        S::Get { .. } | S::Set { .. } | S::Len | S::Snapshot | S::Modify { .. } => false,
        S::Push { .. } | S::Pop | S::Extend { .. } | S::Clear | S::Insert { .. } | S::Remove { .. } => true,
    }
}

pub(super) fn handle(v: &Mutex<Vec<Vec<u8>>>, op: &SeqOp<'_>, cx: &mut Ctx<'_, '_>) -> Result<Done, RemoteError> {
    if cx.kind == Kind::Array && resizes(op) {
        return Err(misuse("an array has a fixed length: it cannot grow or shrink"));
    }
    let mut v = lock(v);
    let (out, held) = (&mut *cx.out, cx.held);
    // A table: one line or short block per operation.
    match *op {
        SeqOp::Get { index: i } => put_option(out, v.get(i as usize).map(Vec::as_slice)),
        SeqOp::Set { index: i, value } => {
            let i = index(i, v.len())?;
            held.stored(value);
            held.dropped(&std::mem::replace(&mut v[i], value.to_vec()));
        }
        SeqOp::Len => put_varint(out, v.len() as u64),
        SeqOp::Snapshot => put_seq(out, v.len(), v.iter().map(Vec::as_slice)),
        SeqOp::Modify { index: i, tramp, f } => {
            let i = index(i, v.len())?;
            functions::run_modify(cx.peer.same_build, tramp, f, Some(&v[i]), out)?;
            held.stored(out);
            held.dropped(&std::mem::replace(&mut v[i], out.clone()));
        }
        SeqOp::Push { value } => {
            held.stored(value);
            v.push(value.to_vec());
        }
        SeqOp::Pop => {
            let last = v.pop();
            last.iter().for_each(|b| held.taken(b));
            put_option(out, last.as_deref());
        }
        SeqOp::Extend { ref values } => {
            values.iter().for_each(|b| held.stored(b));
            v.extend(values.iter().map(|b| b.to_vec()));
        }
        SeqOp::Clear => {
            v.iter().for_each(|b| held.dropped(b));
            v.clear();
        }
        SeqOp::Insert { index: i, value } => {
            if i > v.len() as u64 {
                return Err(RemoteError::IndexOutOfRange { index: i, len: v.len() as u64 });
            }
            held.stored(value);
            v.insert(i as usize, value.to_vec());
        }
        SeqOp::Remove { index: i } => {
            let i = index(i, v.len())?;
            let removed = v.remove(i);
            held.taken(&removed);
            out.extend_from_slice(&removed);
        }
    }
    Ok(Done::Reply)
}
