//! Queues: FIFO of encoded items, optionally bounded and joinable.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

use super::common::{Ctx, Done, lock, misuse, put_bool, put_varint, wait_while};
use crate::manager::protocol::queue::QueueOp;
use crate::manager::protocol::{Kind, RemoteError, Wait};

#[derive(Debug)]
struct QueueState {
    items: VecDeque<Vec<u8>>,
    maxsize: u64,
    unfinished: u64,
}

/// A queue's items and the conditions its waiters wait on.
pub(super) struct Queue {
    q: Mutex<QueueState>,
    not_empty: Condvar,
    not_full: Condvar,
    all_done: Condvar,
}

impl Queue {
    pub(super) fn new(maxsize: u64) -> Queue {
        Queue {
            q: Mutex::new(QueueState { items: VecDeque::new(), maxsize, unfinished: 0 }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            all_done: Condvar::new(),
        }
    }

    pub(super) fn handle(&self, op: &QueueOp<'_>, cx: &mut Ctx<'_, '_>) -> Result<Done, RemoteError> {
        let joinable = cx.kind == Kind::JoinableQueue;
        match *op {
            QueueOp::Put { wait, item } => self.put(wait, item, cx)?,
            QueueOp::Get { wait } => return self.get(wait, cx),
            QueueOp::Len => {
                let st = lock(&self.q);
                put_varint(cx.out, st.items.len() as u64);
                put_varint(cx.out, st.maxsize);
            }
            QueueOp::Ready { wait, room } => {
                let ok = if room {
                    let full = |s: &mut QueueState| s.maxsize > 0 && s.items.len() as u64 >= s.maxsize;
                    wait_while(&self.not_full, lock(&self.q), wait, cx.peer, full)?.1
                } else {
                    wait_while(&self.not_empty, lock(&self.q), wait, cx.peer, |s| s.items.is_empty())?.1
                };
                put_bool(cx.out, ok);
            }
            QueueOp::TaskDone if joinable => self.task_done()?,
            QueueOp::Join { wait } if joinable => {
                let (_st, ok) = wait_while(&self.all_done, lock(&self.q), wait, cx.peer, |s| s.unfinished > 0)?;
                put_bool(cx.out, ok);
            }
            QueueOp::TaskDone | QueueOp::Join { .. } => return Err(cx.wrong(op.target())),
        }
        Ok(Done::Reply)
    }

    fn put(&self, wait: Wait, item: &[u8], cx: &Ctx<'_, '_>) -> Result<(), RemoteError> {
        let full = |s: &mut QueueState| s.maxsize > 0 && s.items.len() as u64 >= s.maxsize;
        let (mut st, ok) = wait_while(&self.not_full, lock(&self.q), wait, cx.peer, full)?;
        if !ok {
            return Err(RemoteError::Full);
        }
        cx.held.stored(item);
        st.items.push_back(item.to_vec());
        st.unfinished += 1;
        // All: a waiter of `Ready` takes nothing, so a wake-up for it alone would be lost.
        self.not_empty.notify_all();
        Ok(())
    }

    fn get(&self, wait: Wait, cx: &mut Ctx<'_, '_>) -> Result<Done, RemoteError> {
        let (mut st, ok) = wait_while(&self.not_empty, lock(&self.q), wait, cx.peer, |s| s.items.is_empty())?;
        if !ok {
            return Err(RemoteError::Empty);
        }
        let item = st.items.pop_front().expect("checked non-empty");
        cx.held.taken(&item);
        self.not_full.notify_all();
        cx.out.extend_from_slice(&item);
        Ok(Done::ReplyOrRequeue)
    }

    fn task_done(&self) -> Result<(), RemoteError> {
        let mut st = lock(&self.q);
        if st.unfinished == 0 {
            return Err(misuse("task_done() called more times than there were items"));
        }
        st.unfinished -= 1;
        if st.unfinished == 0 {
            self.all_done.notify_all();
        }
        Ok(())
    }

    /// Puts back an item whose reply could not be delivered.
    pub(super) fn requeue(&self, item: Vec<u8>) {
        lock(&self.q).items.push_front(item);
        self.not_empty.notify_all();
    }
}
