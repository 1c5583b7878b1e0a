//! `Process::sentinel()` (the child's pidfd: readable once it ends), `Process::close()`
//! (refused while the child runs), and `is_alive()` on `current_process()`,
//! `parent_process()` and `active_children()`, as in Python.

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use multiproc::{Error, Event, Process, Queue, active_children, current_process, parent_process};

multiproc::test_init!();

fn wait_for(go: Event) {
    go.wait().unwrap();
}

fn readable_now(p: &Process) -> bool {
    let fd = p.sentinel().unwrap();
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })).unwrap() == 1
}

#[test]
fn the_sentinel_becomes_readable_when_the_child_ends() {
    let go = Event::new().unwrap();
    let mut p = Process::new(wait_for, go.clone());
    assert!(p.sentinel().is_none(), "no sentinel before start");
    p.start().unwrap();
    assert!(!readable_now(&p), "the child waits for `go`");
    go.set();
    let fd = p.sentinel().unwrap();
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    assert_eq!(poll(&mut fds, None).unwrap(), 1);
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn wait_watches_a_sentinel_beside_a_connection() {
    let (conn, _other) = multiproc::Pipe::duplex::<u8>().unwrap();
    let go = Event::new().unwrap();
    let mut p = Process::new(wait_for, go.clone());
    p.start().unwrap();
    let sentinel = p.sentinel().unwrap();
    assert!(multiproc::wait(&[&conn, &sentinel], Some(std::time::Duration::ZERO)).unwrap().is_empty());
    go.set();
    assert_eq!(multiproc::wait(&[&conn, &sentinel], None).unwrap(), [1]);
    p.join().unwrap();
}

#[test]
fn close_is_refused_while_the_child_runs_and_ends_the_handle_after() {
    let go = Event::new().unwrap();
    let mut p = Process::new(wait_for, go.clone());
    p.start().unwrap();
    assert!(matches!(p.close(), Err(Error::State(m)) if m.contains("still running")));
    assert!(p.is_alive(), "a refused close changes nothing");
    go.set();
    p.join().unwrap();
    p.close().unwrap();
    assert!(p.sentinel().is_none());
    assert!(matches!(p.join(), Err(Error::State(m)) if m.contains("closed")));
    assert!(matches!(p.start(), Err(Error::State(m)) if m.contains("closed")));
    // A process never started may be closed too.
    Process::new(wait_for, go).close().unwrap();
}

fn report_liveness((out, go): (Queue<(bool, bool)>, Event)) {
    out.put((current_process().is_alive(), parent_process().unwrap().is_alive())).unwrap();
    go.wait().unwrap();
}

#[test]
fn a_child_sees_itself_and_its_parent_alive_and_the_parent_sees_it_end() {
    assert!(current_process().is_alive());
    let (out, go) = (Queue::new().unwrap(), Event::new().unwrap());
    let mut p = Process::new(report_liveness, (out.clone(), go.clone()));
    p.start().unwrap();
    assert_eq!(out.get().unwrap(), (true, true));
    let child = active_children().into_iter().find(|c| Some(c.pid()) == p.pid()).expect("listed while it waits");
    assert!(child.is_alive());
    go.set();
    p.join().unwrap();
    assert!(!child.is_alive(), "a joined child is not alive");
}
