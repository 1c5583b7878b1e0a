//! Synchronization requests: what lock, rlock, semaphore, event, condition and barrier
//! proxies ask of their objects. Acquire and release are shared by every lock-like kind.

use super::layout::{Parse, Reader, Travel, Wait};

pub(crate) const FIRST: u8 = 0x70;
pub(crate) const LAST: u8 = 0x7F;

pub(crate) const L_ACQUIRE: u8 = 0x70;
pub(crate) const L_RELEASE: u8 = 0x71;
pub(crate) const SEM_VALUE: u8 = 0x72;
pub(crate) const E_SET: u8 = 0x74;
pub(crate) const E_CLEAR: u8 = 0x75;
pub(crate) const E_IS_SET: u8 = 0x76;
pub(crate) const E_WAIT: u8 = 0x77;
pub(crate) const C_WAIT: u8 = 0x78;
pub(crate) const C_NOTIFY: u8 = 0x79;
pub(crate) const B_WAIT: u8 = 0x7A;
pub(crate) const B_ABORT: u8 = 0x7B;
pub(crate) const B_RESET: u8 = 0x7C;
pub(crate) const B_STATE: u8 = 0x7D;

/// Every synchronization operation and how it travels.
pub(crate) const OPS: &[(u8, Travel)] = &[
    (L_ACQUIRE, Travel::Blocking),
    (L_RELEASE, Travel::Call),
    (SEM_VALUE, Travel::Read),
    (E_SET, Travel::Call),
    (E_CLEAR, Travel::Call),
    (E_IS_SET, Travel::Read),
    (E_WAIT, Travel::Blocking),
    (C_WAIT, Travel::Blocking),
    (C_NOTIFY, Travel::Call),
    (B_WAIT, Travel::Blocking),
    (B_ABORT, Travel::Call),
    (B_RESET, Travel::Call),
    (B_STATE, Travel::Read),
];

/// One synchronization operation. `thread` names the calling thread in its process
/// (the server adds the process's session).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncOp {
    Acquire { thread: u64, wait: Wait },
    Release { thread: u64 },
    SemValue,
    EventSet,
    EventClear,
    EventIsSet,
    EventWait { wait: Wait },
    CondWait { thread: u64, wait: Wait },
    CondNotify { thread: u64, n: u64 },
    BarrierWait { wait: Wait },
    BarrierAbort,
    BarrierReset,
    BarrierState,
}

impl SyncOp {
    /// The kind of object this operation is meant for, for "wrong type" messages.
    pub(crate) fn target(&self) -> &'static str {
        use SyncOp as S;
        match self {
            S::Acquire { .. } | S::Release { .. } => "lock, rlock, semaphore or condition",
            S::SemValue => "semaphore",
            S::EventSet | S::EventClear | S::EventIsSet | S::EventWait { .. } => "event",
            S::CondWait { .. } | S::CondNotify { .. } => "condition",
            S::BarrierWait { .. } | S::BarrierAbort | S::BarrierReset | S::BarrierState => "barrier",
        }
    }
}

/// Reads the payload (after the object id) of synchronization request `code`.
pub(super) fn decode(code: u8, r: &mut Reader<'_>) -> Parse<SyncOp> {
    use SyncOp as S;
    Ok(match code {
        L_ACQUIRE => S::Acquire { thread: r.u64("thread")?, wait: r.wait()? },
        L_RELEASE => S::Release { thread: r.u64("thread")? },
        SEM_VALUE => S::SemValue,
        E_SET => S::EventSet,
        E_CLEAR => S::EventClear,
        E_IS_SET => S::EventIsSet,
        E_WAIT => S::EventWait { wait: r.wait()? },
        C_WAIT => S::CondWait { thread: r.u64("thread")?, wait: r.wait()? },
        C_NOTIFY => S::CondNotify { thread: r.u64("thread")?, n: r.u64("count")? },
        B_WAIT => S::BarrierWait { wait: r.wait()? },
        B_ABORT => S::BarrierAbort,
        B_RESET => S::BarrierReset,
        B_STATE => S::BarrierState,
        other => return Err(super::layout::unknown(other)),
    })
}
