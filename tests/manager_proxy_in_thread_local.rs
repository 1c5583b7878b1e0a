//! A proxy kept in a thread local is dropped while the thread's locals are destroyed,
//! possibly after the client's own: dropping it must still release its reference.

use std::cell::RefCell;
use std::time::Duration;

use multiproc::Manager;
use multiproc::manager::DictProxy;

multiproc::test_init!();

thread_local! {
    static KEPT: RefCell<Option<DictProxy<u8, u8>>> = const { RefCell::new(None) };
}

#[test]
fn a_proxy_dropped_with_its_threads_locals_releases_its_reference() {
    let m = Manager::start().unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    let sent = d.clone();
    std::thread::spawn(move || {
        // The thread local is set up before the client's buffers are, so it is destroyed after them.
        KEPT.with(|k| *k.borrow_mut() = Some(sent));
        KEPT.with(|k| k.borrow().as_ref().unwrap().insert(1, 2).unwrap());
    })
    .join()
    .unwrap();
    assert_eq!(d.get(&1).unwrap(), Some(2));
    drop(d);
    assert!(m.wait_object_count(0, Duration::from_secs(30)).unwrap(), "the thread's reference was not released");
}
