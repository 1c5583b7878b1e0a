//! Namespace requests: what a `NamespaceProxy` asks of a namespace.

use super::layout::{Parse, Reader, Travel};

pub(crate) const FIRST: u8 = 0x58;
pub(crate) const LAST: u8 = 0x5F;

pub(crate) const N_GET: u8 = 0x58;
pub(crate) const N_SET: u8 = 0x59;
pub(crate) const N_REMOVE: u8 = 0x5A;
pub(crate) const N_NAMES: u8 = 0x5B;

/// Every namespace operation and how it travels.
pub(crate) const OPS: &[(u8, Travel)] =
    &[(N_GET, Travel::Read), (N_SET, Travel::Call), (N_REMOVE, Travel::Call), (N_NAMES, Travel::Read)];

/// One namespace operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NamespaceOp<'a> {
    Get { name: &'a str },
    Set { name: &'a str, types: &'a str, value: &'a [u8] },
    Remove { name: &'a str },
    Names,
}

/// Reads the payload (after the object id) of namespace request `code`.
pub(super) fn decode<'a>(code: u8, r: &mut Reader<'a>) -> Parse<NamespaceOp<'a>> {
    use NamespaceOp as N;
    Ok(match code {
        N_GET => N::Get { name: r.str("name")? },
        N_SET => N::Set { name: r.str("name")?, types: r.str("type name")?, value: r.bytes("value")? },
        N_REMOVE => N::Remove { name: r.str("name")? },
        N_NAMES => N::Names,
        other => return Err(super::layout::unknown(other)),
    })
}
