//! Ctrl-C in a terminal sends SIGINT to the whole foreground process group: a program
//! and its manager's server process alike. The server died of it, so a program that
//! handles Ctrl-C to shut down cleanly (reading what its processes left in a shared dict,
//! say) found its manager gone. The server now ignores SIGINT, as Python's does: the
//! program decides, and a program that dies of Ctrl-C takes its server with it.

use multiproc::{Connection, Contain, Manager, Pipe, Process};
use rustix::process::{Pid, Signal, kill_process_group, setsid};

multiproc::test_init!();

/// A program that handles Ctrl-C: once it comes, it uses its manager's dict and ends
/// with 0 if that worked.
fn program_with_a_handler(conn: Connection<u32>) {
    setsid().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut interrupt = {
        let _in = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).unwrap()
    };
    let manager = Manager::start().unwrap();
    let d = manager.dict::<String, u64>().unwrap();
    d.set("before".into(), 1).unwrap();
    conn.send(manager.pid().unwrap()).unwrap();
    rt.block_on(interrupt.recv());
    let after = d.set("after".into(), 2).and_then(|()| d.get(&"before".to_string()));
    std::process::exit(if matches!(after, Ok(Some(1))) { 0 } else { 1 });
}

#[test]
fn ctrl_c_leaves_the_manager_to_the_program_that_handles_it() {
    let (mine, theirs) = Pipe::simplex::<u32>().unwrap();
    let mut p = Process::new(program_with_a_handler, theirs).contain(Contain::Off);
    p.start().unwrap();
    let server = mine.recv().unwrap();
    let leader = Pid::from_raw(p.pid().unwrap() as i32).unwrap();
    assert_eq!(
        rustix::process::getpgid(Some(Pid::from_raw(server as i32).unwrap())).unwrap(),
        leader,
        "the server runs in the program's group"
    );
    kill_process_group(leader, Signal::INT).unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0), "the manager still served after Ctrl-C");
}

/// A program that leaves Ctrl-C to its default: it dies of it.
fn program_without_a_handler(conn: Connection<u32>) {
    setsid().unwrap();
    let manager = Manager::start().unwrap();
    conn.send(manager.pid().unwrap()).unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn ctrl_c_still_ends_a_program_without_a_handler_and_its_server() {
    let (mine, theirs) = Pipe::simplex::<u32>().unwrap();
    let mut p = Process::new(program_without_a_handler, theirs).contain(Contain::Off);
    p.start().unwrap();
    let server = Pid::from_raw(mine.recv().unwrap() as i32).unwrap();
    let server_fd = rustix::process::pidfd_open(server, rustix::process::PidfdFlags::empty()).unwrap();
    kill_process_group(Pid::from_raw(p.pid().unwrap() as i32).unwrap(), Signal::INT).unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-2), "the program died of SIGINT");
    let mut fds = [rustix::event::PollFd::new(&server_fd, rustix::event::PollFlags::IN)];
    let limit = rustix::event::Timespec { tv_sec: 60, tv_nsec: 0 };
    assert_eq!(rustix::event::poll(&mut fds, Some(&limit)).unwrap(), 1, "the server outlived its program");
}
