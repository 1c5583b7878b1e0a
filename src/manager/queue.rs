//! `QueueProxy` and `JoinableQueueProxy`: FIFO queues living in the server.
//!
//! A blocking `get` or `put` waits in the server, on its own connection, so other
//! threads of the process keep making calls meanwhile. An item whose `get` reply cannot
//! be delivered (the getter died) goes back to the front of the queue.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::{self, unit};
use super::error::ManagerError;
use super::handle::Handle;
use super::handle::type_name;
use super::protocol::{Kind, Wait, queue as op};

proxy! {
    /// A proxy of a queue living in a manager's server (Python's `Manager().Queue()`);
    /// made by [`Manager::queue`](super::Manager::queue). Unlike a plain queue, it can be
    /// passed to pool tasks.
    ///
    /// ```
    /// use multiproc::{Manager, Process};
    /// use multiproc::manager::QueueProxy;
    ///
    /// fn producer(q: QueueProxy<String>) {
    ///     q.put("a".to_string()).unwrap();
    /// }
    ///
    /// multiproc::init();
    /// let manager = Manager::start()?;
    /// let q = manager.queue::<String>(10)?;
    /// let mut p = Process::new(producer, q.clone());
    /// p.start()?;
    /// assert_eq!(q.get()?, "a");
    /// p.join()?;
    /// assert!(matches!(q.get_nowait(), Err(multiproc::ManagerError::Empty)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    QueueProxy[T], Kind::Queue, format!("queue<{}>", type_name::<T>())
}

proxy! {
    /// A proxy of a queue that also counts unfinished items (Python's `JoinableQueue`):
    /// each `get` should be followed by a [`task_done`](Self::task_done), and
    /// [`join`](Self::join) waits until every item put has been done.
    ///
    /// ```
    /// multiproc::init();
    /// let manager = multiproc::Manager::start()?;
    /// let q = manager.joinable_queue::<u8>(0)?;
    /// q.put(1)?;
    /// assert_eq!(q.get()?, 1);
    /// assert!(!q.join_timeout(std::time::Duration::ZERO)?);
    /// q.task_done()?;
    /// q.join()?;
    /// # Ok::<(), multiproc::ManagerError>(())
    /// ```
    JoinableQueueProxy[T], Kind::JoinableQueue, format!("joinable queue<{}>", type_name::<T>())
}

fn put<T: Serialize>(c: &Handle, id: u64, item: &T, wait: Option<Duration>) -> Result<(), ManagerError> {
    c.call(op::Q_PUT, |w| w.u64(id).u64(Wait::micros(wait)).value(item)?.done(), unit)
}

fn get<T: DeserializeOwned>(c: &Handle, id: u64, wait: Option<Duration>) -> Result<T, ManagerError> {
    c.call(op::Q_GET, |w| w.u64(id).u64(Wait::micros(wait)).done(), client::value::<T>)
}

fn len(c: &Handle, id: u64) -> Result<(usize, usize), ManagerError> {
    c.call(op::Q_LEN, |w| w.u64(id).done(), client::value::<(u64, u64)>).map(|(n, max)| (n as usize, max as usize))
}

/// The methods both queue proxies have.
macro_rules! queue_methods {
    () => {
        /// Puts `item` at the back, waiting while the queue is full.
        pub fn put(&self, item: T) -> Result<(), ManagerError> {
            put(&self.h, self.h.id, &item, None)
        }

        /// Puts `item`, waiting at most `timeout` for room; [`ManagerError::Full`] if none came.
        pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), ManagerError> {
            put(&self.h, self.h.id, &item, Some(timeout))
        }

        /// Puts `item` if there is room now; [`ManagerError::Full`] otherwise.
        pub fn put_nowait(&self, item: T) -> Result<(), ManagerError> {
            put(&self.h, self.h.id, &item, Some(Duration::ZERO))
        }

        /// Takes the front item, waiting until there is one.
        pub fn get(&self) -> Result<T, ManagerError> {
            get(&self.h, self.h.id, None)
        }

        /// Takes the front item, waiting at most `timeout`; [`ManagerError::Empty`] if none came.
        pub fn get_timeout(&self, timeout: Duration) -> Result<T, ManagerError> {
            get(&self.h, self.h.id, Some(timeout))
        }

        /// Takes the front item if there is one now; [`ManagerError::Empty`] otherwise.
        pub fn get_nowait(&self) -> Result<T, ManagerError> {
            get(&self.h, self.h.id, Some(Duration::ZERO))
        }

        /// Takes the front item, for async code: a future that never waits on its thread
        /// for the queue (any runtime, or none). Each try is one `get_nowait` (a request
        /// that does not wait in the server); while the queue is empty, a helper thread
        /// waits in the server, taking nothing, and wakes the task. Dropping the future
        /// loses no item.
        ///
        /// ```
        /// multiproc::init();
        /// let manager = multiproc::Manager::start()?;
        /// let q = manager.queue::<u32>(0)?;
        /// let rt = tokio::runtime::Builder::new_current_thread().build()?;
        /// rt.block_on(async {
        ///     q.put_async(5).await?;
        ///     assert_eq!(q.get_async().await?, 5);
        ///     Ok::<(), multiproc::ManagerError>(())
        /// })?;
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn get_async(&self) -> super::queue_async::ProxyGet<'_, T> {
            super::queue_async::ProxyGet::new(&self.h)
        }

        /// Puts `item` at the back, for async code: as [`get_async`](Self::get_async),
        /// each try a `put_nowait`, a helper thread waiting in the server while the queue
        /// is full. Dropping the future before it is ready puts nothing.
        pub fn put_async(&self, item: T) -> super::queue_async::ProxyPut<'_, T> {
            super::queue_async::ProxyPut::new(&self.h, item)
        }

        /// The number of items (Python's `qsize`).
        pub fn len(&self) -> Result<usize, ManagerError> {
            Ok(len(&self.h, self.h.id)?.0)
        }

        /// Whether the queue holds no item.
        pub fn is_empty(&self) -> Result<bool, ManagerError> {
            Ok(self.len()? == 0)
        }

        /// Whether a bounded queue is at its `maxsize`.
        pub fn is_full(&self) -> Result<bool, ManagerError> {
            let (n, max) = len(&self.h, self.h.id)?;
            Ok(max > 0 && n >= max)
        }
    };
}

impl<T: Serialize + DeserializeOwned + 'static> QueueProxy<T> {
    queue_methods!();
}

impl<T: Serialize + DeserializeOwned + 'static> JoinableQueueProxy<T> {
    queue_methods!();

    /// Marks one item taken with `get` as processed.
    pub fn task_done(&self) -> Result<(), ManagerError> {
        self.h.call(op::Q_TASK_DONE, |w| w.u64(self.h.id).done(), unit)
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<(), ManagerError> {
        self.join_wait(None).map(drop)
    }

    /// Waits at most `timeout` for every item to be done; returns whether they are.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.join_wait(Some(timeout))
    }

    fn join_wait(&self, wait: Option<Duration>) -> Result<bool, ManagerError> {
        self.h.call(op::Q_JOIN, |w| w.u64(self.h.id).u64(Wait::micros(wait)).done(), client::value::<bool>)
    }
}
