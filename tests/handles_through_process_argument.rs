//! Every handle type travels as (part of) a Process argument, its descriptors riding
//! along, and is the same object on both sides.

use std::time::Duration;

use multiproc::{
    Array, Barrier, BoundedSemaphore, Condition, Connection, Event, JoinableQueue, Lock, Pipe, Process, Queue, RLock,
    RawArray, RawValue, Semaphore, SharedMemory, SimpleQueue, Value,
};

multiproc::test_init!();

type Everything = (
    (Queue<String>, JoinableQueue<u8>, SimpleQueue<u8>, Connection<String>),
    (Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition, Barrier),
    (Value<i64>, Array<u16>, RawValue<u32>, RawArray<u8>, SharedMemory),
);

fn touch_everything(
    ((q, jq, sq, conn), (lock, rlock, sem, bsem, event, cond, barrier), (v, a, rv, ra, mut shm)): Everything,
) {
    q.put("queue".to_string()).unwrap();
    jq.put(1).unwrap();
    sq.put(2).unwrap();
    conn.send("pipe".to_string()).unwrap();
    drop(lock.acquire().unwrap());
    drop(rlock.acquire().unwrap());
    sem.release().unwrap();
    bsem.acquire().unwrap();
    drop(cond.acquire().unwrap());
    v.set(-1).unwrap();
    a.set(1, 7).unwrap();
    rv.store(9);
    ra.set(0, 3);
    shm.as_mut_slice()[0] = 42;
    event.set();
    barrier.wait().unwrap();
}

#[test]
fn all_handles_in_one_argument_reach_the_same_objects() {
    let q = Queue::new().unwrap();
    let jq = JoinableQueue::new().unwrap();
    let sq = SimpleQueue::new().unwrap();
    let (mine, theirs) = Pipe::duplex().unwrap();
    let sem = Semaphore::new(0).unwrap();
    let bsem = BoundedSemaphore::new(1).unwrap();
    let event = Event::new().unwrap();
    let barrier = Barrier::new(2).unwrap();
    let v = Value::new(0i64).unwrap();
    let a = Array::new(3, 0u16).unwrap();
    let rv = RawValue::new(0u32).unwrap();
    let ra = RawArray::new(2, 0u8).unwrap();
    let shm = SharedMemory::create(64).unwrap();
    let arg = (
        (q.clone(), jq.clone(), sq.clone(), theirs),
        (
            Lock::new().unwrap(),
            RLock::new().unwrap(),
            sem.clone(),
            bsem.clone(),
            event.clone(),
            Condition::new().unwrap(),
            barrier.clone(),
        ),
        (v.clone(), a.clone(), rv.clone(), ra.clone(), shm.try_clone().unwrap()),
    );
    let mut p = Process::new(touch_everything, arg);
    p.start().unwrap();
    let long = Duration::from_secs(60);
    barrier.wait_timeout(long).unwrap();
    assert!(event.is_set());
    assert_eq!(q.get_timeout(long).unwrap(), "queue");
    assert_eq!(jq.get_timeout(long).unwrap(), 1);
    jq.task_done().unwrap();
    jq.join().unwrap();
    assert_eq!(sq.get_timeout(long).unwrap(), 2);
    assert_eq!(mine.recv_timeout(long).unwrap(), "pipe");
    sem.acquire_timeout(long).unwrap();
    assert_eq!(bsem.value(), 0);
    assert_eq!(v.get().unwrap(), -1);
    assert_eq!(a.to_vec().unwrap(), [0, 7, 0]);
    assert_eq!(rv.load(), 9);
    assert_eq!(ra.to_vec(), [3, 0]);
    assert_eq!(shm.as_slice()[0], 42);
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}
