//! Requests about the registry rather than one object's contents: creating objects,
//! counting references, moving them between processes, names.

use super::layout::{Kind, Parse, Reader, Travel, Wait, bad};

pub(crate) const FIRST: u8 = 0x00;
pub(crate) const LAST: u8 = 0x1F;

pub(crate) const CREATE: u8 = 0x01;
pub(crate) const INCREF: u8 = 0x02;
pub(crate) const DECREF: u8 = 0x03;
pub(crate) const TRANSIT: u8 = 0x04;
pub(crate) const ADOPT: u8 = 0x05;
pub(crate) const PUBLISH: u8 = 0x06;
pub(crate) const LOOKUP: u8 = 0x07;
pub(crate) const UNPUBLISH: u8 = 0x08;
pub(crate) const COUNT: u8 = 0x09;
pub(crate) const WAIT_COUNT: u8 = 0x0A;
pub(crate) const PING: u8 = 0x0B;

/// Every registry operation and how it travels.
pub(crate) const OPS: &[(u8, Travel)] = &[
    (CREATE, Travel::Call),
    (INCREF, Travel::Call),
    (DECREF, Travel::Posted),
    (TRANSIT, Travel::Call),
    (ADOPT, Travel::Call),
    (PUBLISH, Travel::Call),
    (LOOKUP, Travel::Call),
    (UNPUBLISH, Travel::Call),
    (COUNT, Travel::Call),
    (WAIT_COUNT, Travel::Blocking),
    (PING, Travel::Call),
];

/// What a new object starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Init<'a> {
    /// Dict, namespace, event, lock, rlock, condition: nothing.
    Empty,
    /// A list or array with these elements.
    Items(Vec<&'a [u8]>),
    /// A queue of this capacity (0: unbounded).
    Queue { maxsize: u64 },
    /// A value.
    Value(&'a [u8]),
    /// A semaphore's counter and, if bounded, its ceiling.
    Semaphore { value: u64, bounded: bool },
    /// A barrier for this many parties.
    Barrier { parties: u64 },
    /// A user type built in the server by the function at `ctor` from `init`.
    Custom { ctor: i64, init: &'a [u8] },
}

/// One registry request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RegistryOp<'a> {
    Create { kind: Kind, types: &'a str, init: Init<'a> },
    Incref { obj: u64, kind: Kind, types: &'a str },
    Decref { obj: u64 },
    Transit { obj: u64 },
    Adopt { obj: u64, token: u64, kind: Kind, types: &'a str },
    Publish { name: &'a str, obj: u64 },
    Lookup { name: &'a str, kind: Kind, types: &'a str },
    Unpublish { name: &'a str },
    Count,
    Ping,
    WaitCount { max: u64, wait: Wait },
}

/// Reads the payload of registry request `code` (one of [`OPS`]).
pub(super) fn decode<'a>(code: u8, r: &mut Reader<'a>) -> Parse<RegistryOp<'a>> {
    use RegistryOp as R;
    Ok(match code {
        CREATE => {
            let kind = r.kind()?;
            let types = r.str("type signature")?;
            R::Create { kind, types, init: init(kind, r)? }
        }
        INCREF => R::Incref { obj: r.obj()?, kind: r.kind()?, types: r.str("type signature")? },
        DECREF => R::Decref { obj: r.obj()? },
        TRANSIT => R::Transit { obj: r.obj()? },
        ADOPT => R::Adopt { obj: r.obj()?, token: r.u64("token")?, kind: r.kind()?, types: r.str("type signature")? },
        PUBLISH => R::Publish { name: r.str("name")?, obj: r.obj()? },
        LOOKUP => R::Lookup { name: r.str("name")?, kind: r.kind()?, types: r.str("type signature")? },
        UNPUBLISH => R::Unpublish { name: r.str("name")? },
        COUNT => R::Count,
        PING => R::Ping,
        WAIT_COUNT => R::WaitCount { max: r.u64("count")?, wait: r.wait()? },
        other => return Err(super::layout::unknown(other)),
    })
}

/// Reads what a new object of `kind` starts with.
fn init<'a>(kind: Kind, r: &mut Reader<'a>) -> Parse<Init<'a>> {
    Ok(match kind {
        Kind::Dict | Kind::Namespace | Kind::Event | Kind::Lock | Kind::RLock | Kind::Condition => Init::Empty,
        Kind::List | Kind::Array => Init::Items(r.list("elements")?),
        Kind::Queue | Kind::JoinableQueue => Init::Queue { maxsize: r.u64("maxsize")? },
        Kind::Value => Init::Value(r.bytes("value")?),
        Kind::Semaphore => {
            let value = r.u64("semaphore value")?;
            let bounded = match r.u8("bounded flag")? {
                0 => false,
                1 => true,
                b => return Err(bad(format!("bounded flag {b} is neither 0 nor 1"))),
            };
            Init::Semaphore { value, bounded }
        }
        Kind::Barrier => Init::Barrier { parties: r.u64("parties")? },
        Kind::Custom => Init::Custom { ctor: r.i64("constructor")?, init: r.bytes("initial value")? },
    })
}
