//! Value requests: what a `ValueProxy` asks of a value.

use super::layout::{Parse, Reader, Travel};

pub(crate) const FIRST: u8 = 0x50;
pub(crate) const LAST: u8 = 0x57;

pub(crate) const V_GET: u8 = 0x50;
pub(crate) const V_SET: u8 = 0x51;
pub(crate) const V_MODIFY: u8 = 0x52;

/// Every value operation and how it travels.
pub(crate) const OPS: &[(u8, Travel)] = &[(V_GET, Travel::Read), (V_SET, Travel::Call), (V_MODIFY, Travel::Call)];

/// One value operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ValueOp<'a> {
    Get,
    Set { value: &'a [u8] },
    Modify { tramp: i64, f: i64 },
}

/// Reads the payload (after the object id) of value request `code`.
pub(super) fn decode<'a>(code: u8, r: &mut Reader<'a>) -> Parse<ValueOp<'a>> {
    Ok(match code {
        V_GET => ValueOp::Get,
        V_SET => ValueOp::Set { value: r.bytes("value")? },
        V_MODIFY => ValueOp::Modify { tramp: r.i64("function")?, f: r.i64("function")? },
        other => return Err(super::layout::unknown(other)),
    })
}
