//! `Sandbox::private_network`: a worker (or `Process`) in its own network namespace
//! cannot reach a TCP listener on the parent's 127.0.0.1; a task that fails on it is told
//! the rule; the stats say the private network is in effect; without it the same task
//! connects.
#![cfg(feature = "sandbox")]

use std::net::{SocketAddr, TcpListener};

use multiproc::{Connection, Pipe, Pool, Process, Sandbox, TaskError};

multiproc::test_init!();

/// Whether this kernel allows a private network; the tests that need it skip otherwise.
fn supported() -> bool {
    let yes = Sandbox::support().private_network;
    if !yes {
        eprintln!("skipped: this kernel refuses unprivileged user namespaces");
    }
    yes
}

fn connect(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect(addr).unwrap();
    true
}

fn unix_pair(_: ()) -> bool {
    std::os::unix::net::UnixStream::pair().is_ok()
}

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    (l, addr)
}

#[test]
fn a_task_cannot_reach_the_parents_loopback_and_is_told_the_rule() {
    if !supported() {
        return;
    }
    let (l, addr) = listener();
    let pool = Pool::builder().processes(1).sandbox(Sandbox::new().private_network()).build().unwrap();
    match pool.apply(connect, addr) {
        Err(TaskError::Panicked { message, .. }) => {
            assert!(message.contains("Network is unreachable"), "{message}");
            assert!(message.contains("sandbox: network unreachable (private network"), "{message}");
        }
        other => panic!("expected the connect to fail, got {other:?}"),
    }
    assert_eq!(l.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock, "nothing reached the listener");
    // The worker survived (a panic is not a death) and still talks to its pool.
    assert!(pool.apply(unix_pair, ()).unwrap());
    assert_eq!(pool.stats().workers_started, 1);
    assert_eq!(pool.stats().sandbox.as_deref(), Some("no_new_privs; private network"));
}

#[test]
fn without_a_private_network_the_same_task_connects() {
    let (l, addr) = listener();
    let pool = Pool::builder().processes(1).sandbox(Sandbox::new()).build().unwrap();
    assert!(pool.apply(connect, addr).unwrap());
    l.set_nonblocking(false).unwrap();
    assert!(l.accept().is_ok());
    assert_eq!(pool.stats().sandbox.as_deref(), Some("no_new_privs"));
    assert_eq!(Pool::new(1).unwrap().stats().sandbox, None);
}

fn try_connect((conn, addr): (Connection<String>, SocketAddr)) {
    let r = std::net::TcpStream::connect(addr);
    conn.send(r.map(|_| "connected".to_string()).unwrap_or_else(|e| e.to_string())).unwrap();
}

#[test]
fn a_process_with_a_private_network_cannot_reach_the_parents_loopback() {
    if !supported() {
        return;
    }
    let (l, addr) = listener();
    let (ours, theirs) = Pipe::simplex().unwrap();
    let mut p = Process::new(try_connect, (theirs, addr)).sandbox(Sandbox::new().private_network());
    p.start().unwrap();
    let said = ours.recv().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    assert!(said.contains("Network is unreachable"), "{said}");
    assert_eq!(l.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
}

static THREAD: std::sync::OnceLock<std::thread::JoinHandle<()>> = std::sync::OnceLock::new();

fn start_a_thread(_: ()) {
    let _ = THREAD.set(std::thread::spawn(std::thread::park));
}

#[test]
fn an_initializer_that_leaves_a_thread_running_is_a_clear_error() {
    if !supported() {
        return;
    }
    let built = Pool::builder()
        .processes(1)
        .initializer(start_a_thread, ())
        .sandbox(Sandbox::new().private_network().best_effort(true))
        .build();
    let Err(err) = built else { panic!("a threaded worker cannot enter a user namespace") };
    assert!(err.to_string().contains("a private network needs a single-threaded process"), "{err}");
}

/// Run by the next test, in a user namespace where no further one may be made: `build`
/// fails naming what the kernel refused; with best effort the pool runs, network open,
/// and its stats say the private network was left out.
#[test]
#[ignore = "run by where_the_kernel_refuses_build_fails_unless_best_effort"]
fn refused_inside() {
    let Err(err) = Pool::builder().processes(1).sandbox(Sandbox::new().private_network()).build() else {
        panic!("the kernel refuses a user namespace here, and build did not fail");
    };
    assert!(err.to_string().contains("sandbox: no private network: the kernel refuses"), "{err}");
    assert!(err.to_string().contains("best_effort(true)"), "{err}");
    let (l, addr) = listener();
    let sandbox = Sandbox::new().private_network().best_effort(true);
    let pool = Pool::builder().processes(1).sandbox(sandbox).build().unwrap();
    assert!(pool.apply(connect, addr).unwrap());
    l.set_nonblocking(false).unwrap();
    assert!(l.accept().is_ok());
    let stats = pool.stats().sandbox.unwrap();
    assert!(stats.starts_with("no_new_privs; private network (LEFT OUT: the kernel refuses"), "{stats}");
}

#[test]
fn where_the_kernel_refuses_build_fails_unless_best_effort() {
    // A user namespace whose limit of further user namespaces is 0 (the limit is per
    // namespace), made with util-linux's `unshare`.
    let exe = std::env::current_exe().unwrap();
    let script =
        "echo 0 > /proc/sys/user/max_user_namespaces && exec \"$0\" --exact refused_inside --ignored --nocapture";
    let out = std::process::Command::new("unshare").args(["-Ur", "sh", "-c", script]).arg(&exe).output();
    let out = match out {
        Ok(out) if !String::from_utf8_lossy(&out.stderr).contains("unshare:") => out,
        _ => {
            eprintln!("skipped: cannot make a user namespace with `unshare -Ur` here");
            return;
        }
    };
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{all}");
    assert!(all.contains("1 passed"), "{all}");
}
