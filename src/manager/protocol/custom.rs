//! Custom object requests: what an `ObjectProxy` asks of an object of the user's type.

use super::layout::{Parse, Reader, Travel};

pub(crate) const FIRST: u8 = 0x90;
pub(crate) const LAST: u8 = 0x9F;

pub(crate) const CALL: u8 = 0x90;

/// Every custom object operation and how it travels.
pub(crate) const OPS: &[(u8, Travel)] = &[(CALL, Travel::Call)];

/// One custom object operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CustomOp<'a> {
    /// Runs the method at offset `method` (through `tramp`) on the object with `arg`.
    Call { tramp: i64, method: i64, arg: &'a [u8] },
}

/// Reads the payload (after the object id) of custom object request `code`.
pub(super) fn decode<'a>(code: u8, r: &mut Reader<'a>) -> Parse<CustomOp<'a>> {
    Ok(match code {
        CALL => CustomOp::Call { tramp: r.i64("function")?, method: r.i64("function")?, arg: r.bytes("argument")? },
        other => return Err(super::layout::unknown(other)),
    })
}
