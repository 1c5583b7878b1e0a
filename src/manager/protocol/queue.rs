//! Queue requests: what a `QueueProxy` or a `JoinableQueueProxy` asks of its queue.

use super::layout::{Parse, Reader, Travel, Wait};

pub(crate) const FIRST: u8 = 0x60;
pub(crate) const LAST: u8 = 0x6F;

pub(crate) const Q_PUT: u8 = 0x60;
pub(crate) const Q_GET: u8 = 0x61;
pub(crate) const Q_LEN: u8 = 0x62;
pub(crate) const Q_TASK_DONE: u8 = 0x63;
pub(crate) const Q_JOIN: u8 = 0x64;
/// Waits until a `get` (or, with the flag set, a `put`) could go on now, taking and
/// putting nothing: the helper thread of an async call waits with it.
pub(crate) const Q_READY: u8 = 0x65;

/// Every queue operation and how it travels.
pub(crate) const OPS: &[(u8, Travel)] = &[
    (Q_PUT, Travel::Blocking),
    (Q_GET, Travel::Blocking),
    (Q_LEN, Travel::Read),
    (Q_TASK_DONE, Travel::Call),
    (Q_JOIN, Travel::Blocking),
    (Q_READY, Travel::Blocking),
];

/// One queue operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QueueOp<'a> {
    Put {
        wait: Wait,
        item: &'a [u8],
    },
    Get {
        wait: Wait,
    },
    Len,
    TaskDone,
    Join {
        wait: Wait,
    },
    /// Ready when the queue has an item (`room: false`) or room for one (`room: true`).
    Ready {
        wait: Wait,
        room: bool,
    },
}

impl QueueOp<'_> {
    /// The kind of object this operation is meant for, for "wrong type" messages.
    pub(crate) fn target(&self) -> &'static str {
        match self {
            QueueOp::Put { .. } | QueueOp::Get { .. } | QueueOp::Len | QueueOp::Ready { .. } => "queue",
            QueueOp::TaskDone | QueueOp::Join { .. } => "joinable queue",
        }
    }
}

/// Reads the payload (after the object id) of queue request `code`.
pub(super) fn decode<'a>(code: u8, r: &mut Reader<'a>) -> Parse<QueueOp<'a>> {
    Ok(match code {
        Q_PUT => QueueOp::Put { wait: r.wait()?, item: r.bytes("item")? },
        Q_GET => QueueOp::Get { wait: r.wait()? },
        Q_LEN => QueueOp::Len,
        Q_TASK_DONE => QueueOp::TaskDone,
        Q_JOIN => QueueOp::Join { wait: r.wait()? },
        Q_READY => QueueOp::Ready {
            wait: r.wait()?,
            room: match r.u8("room flag")? {
                0 => false,
                1 => true,
                other => return Err(super::layout::bad(format!("room flag {other} is neither 0 nor 1"))),
            },
        },
        other => return Err(super::layout::unknown(other)),
    })
}
