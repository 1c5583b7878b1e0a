//! A request sent without waiting (`push`, `set`) that the server refuses is reported as
//! that request's failure: the replies to the calls after it stay theirs.

use multiproc::{Fd, Manager};

multiproc::test_init!();

#[test]
fn a_refused_push_does_not_shift_later_replies() {
    let m = Manager::start().unwrap();
    let files = m.list::<Fd>().unwrap();
    let d = m.dict::<u8, u8>().unwrap();
    d.insert(1, 10).unwrap();
    // A descriptor cannot be stored in a manager: the server refuses the push, and the
    // client, which does not wait for an answer, learns it later (on stderr).
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    files.push(Fd::from(a)).unwrap();
    assert_eq!(d.insert(2, 20).unwrap(), None);
    assert_eq!(d.get(&1).unwrap(), Some(10));
    assert_eq!(d.get(&2).unwrap(), Some(20));
    assert_eq!(files.len().unwrap(), 0);
}
