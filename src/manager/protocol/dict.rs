//! Dict requests: what a `DictProxy` asks of a dict.

use super::layout::{Parse, Reader, Travel};

pub(crate) const FIRST: u8 = 0x20;
pub(crate) const LAST: u8 = 0x3F;

pub(crate) const D_GET: u8 = 0x20;
pub(crate) const D_INSERT: u8 = 0x21;
pub(crate) const D_SET: u8 = 0x22;
pub(crate) const D_REMOVE: u8 = 0x23;
pub(crate) const D_CONTAINS: u8 = 0x24;
pub(crate) const D_LEN: u8 = 0x25;
pub(crate) const D_KEYS: u8 = 0x26;
pub(crate) const D_VALUES: u8 = 0x27;
pub(crate) const D_ITEMS: u8 = 0x28;
pub(crate) const D_UPDATE: u8 = 0x29;
pub(crate) const D_CLEAR: u8 = 0x2A;
pub(crate) const D_MODIFY: u8 = 0x2B;
pub(crate) const D_GET_MANY: u8 = 0x2C;
pub(crate) const D_KEYS_FROM: u8 = 0x2D;

/// The `version` of a [`DictOp::KeysFrom`] that starts an iteration.
pub(crate) const ITER_START: u64 = u64::MAX;

/// Every dict operation and how it travels.
pub(crate) const OPS: &[(u8, Travel)] = &[
    (D_GET, Travel::Read),
    (D_INSERT, Travel::Call),
    (D_SET, Travel::Posted),
    (D_REMOVE, Travel::Call),
    (D_CONTAINS, Travel::Read),
    (D_LEN, Travel::Read),
    (D_KEYS, Travel::Read),
    (D_VALUES, Travel::Read),
    (D_ITEMS, Travel::Read),
    (D_UPDATE, Travel::Call),
    (D_CLEAR, Travel::Call),
    (D_MODIFY, Travel::Call),
    (D_GET_MANY, Travel::Read),
    (D_KEYS_FROM, Travel::Read),
];

/// One dict operation; keys and values are their clients' encoded bytes. `KeysFrom`
/// asks for at most `max` keys from insertion position `from` on, for a live iterator
/// that has seen the dict at `version` ([`ITER_START`]: it starts now).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DictOp<'a> {
    Get { key: &'a [u8] },
    GetMany { keys: Vec<&'a [u8]> },
    Insert { key: &'a [u8], value: &'a [u8] },
    Set { key: &'a [u8], value: &'a [u8] },
    Remove { key: &'a [u8] },
    Contains { key: &'a [u8] },
    Len,
    Keys,
    Values,
    Items,
    Update { pairs: Vec<(&'a [u8], &'a [u8])> },
    Clear,
    Modify { key: &'a [u8], tramp: i64, f: i64 },
    KeysFrom { version: u64, from: u64, max: u32 },
}

/// Reads the payload (after the object id) of dict request `code`.
pub(super) fn decode<'a>(code: u8, r: &mut Reader<'a>) -> Parse<DictOp<'a>> {
    use DictOp as D;
    Ok(match code {
        D_GET => D::Get { key: r.bytes("key")? },
        D_GET_MANY => D::GetMany { keys: r.list("keys")? },
        D_INSERT => D::Insert { key: r.bytes("key")?, value: r.bytes("value")? },
        D_SET => D::Set { key: r.bytes("key")?, value: r.bytes("value")? },
        D_REMOVE => D::Remove { key: r.bytes("key")? },
        D_CONTAINS => D::Contains { key: r.bytes("key")? },
        D_LEN => D::Len,
        D_KEYS => D::Keys,
        D_VALUES => D::Values,
        D_ITEMS => D::Items,
        D_UPDATE => D::Update { pairs: r.pairs("pairs")? },
        D_CLEAR => D::Clear,
        D_MODIFY => D::Modify { key: r.bytes("key")?, tramp: r.i64("function")?, f: r.i64("function")? },
        D_KEYS_FROM => D::KeysFrom { version: r.u64("version")?, from: r.u64("position")?, max: r.u32("count")? },
        other => return Err(super::layout::unknown(other)),
    })
}
