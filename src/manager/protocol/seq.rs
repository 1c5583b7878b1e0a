//! Sequence requests: what a `ListProxy` or an `ArrayProxy` asks of its object.

use super::layout::{Parse, Reader, Travel};

pub(crate) const FIRST: u8 = 0x40;
pub(crate) const LAST: u8 = 0x4F;

pub(crate) const S_PUSH: u8 = 0x40;
pub(crate) const S_POP: u8 = 0x41;
pub(crate) const S_GET: u8 = 0x42;
pub(crate) const S_SET: u8 = 0x43;
pub(crate) const S_LEN: u8 = 0x44;
pub(crate) const S_EXTEND: u8 = 0x45;
pub(crate) const S_SNAPSHOT: u8 = 0x46;
pub(crate) const S_CLEAR: u8 = 0x47;
pub(crate) const S_INSERT: u8 = 0x48;
pub(crate) const S_REMOVE: u8 = 0x49;
pub(crate) const S_MODIFY: u8 = 0x4A;

/// Every sequence operation and how it travels.
pub(crate) const OPS: &[(u8, Travel)] = &[
    (S_PUSH, Travel::Posted),
    (S_POP, Travel::Call),
    (S_GET, Travel::Read),
    (S_SET, Travel::Call),
    (S_LEN, Travel::Read),
    (S_EXTEND, Travel::Call),
    (S_SNAPSHOT, Travel::Read),
    (S_CLEAR, Travel::Call),
    (S_INSERT, Travel::Call),
    (S_REMOVE, Travel::Call),
    (S_MODIFY, Travel::Call),
];

/// One list or array operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SeqOp<'a> {
    Push { value: &'a [u8] },
    Pop,
    Get { index: u64 },
    Set { index: u64, value: &'a [u8] },
    Len,
    Extend { values: Vec<&'a [u8]> },
    Snapshot,
    Clear,
    Insert { index: u64, value: &'a [u8] },
    Remove { index: u64 },
    Modify { index: u64, tramp: i64, f: i64 },
}

/// Reads the payload (after the object id) of sequence request `code`.
pub(super) fn decode<'a>(code: u8, r: &mut Reader<'a>) -> Parse<SeqOp<'a>> {
    use SeqOp as S;
    Ok(match code {
        S_PUSH => S::Push { value: r.bytes("value")? },
        S_POP => S::Pop,
        S_GET => S::Get { index: r.u64("index")? },
        S_SET => S::Set { index: r.u64("index")?, value: r.bytes("value")? },
        S_LEN => S::Len,
        S_EXTEND => S::Extend { values: r.list("values")? },
        S_SNAPSHOT => S::Snapshot,
        S_CLEAR => S::Clear,
        S_INSERT => S::Insert { index: r.u64("index")?, value: r.bytes("value")? },
        S_REMOVE => S::Remove { index: r.u64("index")? },
        S_MODIFY => S::Modify { index: r.u64("index")?, tramp: r.i64("function")?, f: r.i64("function")? },
        other => return Err(super::layout::unknown(other)),
    })
}
