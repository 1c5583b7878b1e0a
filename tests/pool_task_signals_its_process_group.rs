//! A task that signals its own process group — a shell script's `trap 'kill 0' EXIT`, a
//! `kill(0, SIGTERM)` — signalled the program's: a pool's workers were in the program's
//! process group, so the program died of what a task ran. Each worker now leads a group
//! of its own: the signal ends that worker (and what its task started), the task fails
//! naming the signal, and the program and its other tasks go on. Whatever the
//! containment, and whatever the start method.

use multiproc::{Connection, Contain, Pipe, Pool, Process, StartMethod, TaskError};

multiproc::test_init!();

/// The task: runs a shell that sends SIGTERM to its process group, as `kill 0` does.
fn kill_zero(_: ()) -> u32 {
    let _ = std::process::Command::new("sh").arg("-c").arg("kill -TERM 0; sleep 5").status();
    7
}

fn double(x: u32) -> u32 {
    2 * x
}

/// The program: leads a group of its own (as one started from a shell does), runs the
/// task on a pool contained as `contain` says with workers started as `method` says;
/// sends whether the task failed of SIGTERM and the pool went on.
fn program((conn, contain, fork_server): (Connection<bool>, u8, bool)) {
    rustix::process::setsid().unwrap();
    let contain = CONTAINS[contain as usize];
    let method = if fork_server { StartMethod::ForkServer } else { StartMethod::Exec };
    let pool = Pool::builder().processes(2).contain(contain).start_method(method).build().unwrap();
    let killed = matches!(pool.apply(kill_zero, ()), Err(TaskError::WorkerDied { signal: Some(15), .. }));
    let went_on = pool.map(double, 0..8u32) == Ok((0..8).map(|x| 2 * x).collect());
    pool.close();
    pool.join().unwrap();
    conn.send(killed && went_on).unwrap();
}

const CONTAINS: [Contain; 3] = [Contain::Auto, Contain::ProcessTree, Contain::Off];

fn survives(contain: u8, fork_server: bool) {
    let (ours, theirs) = Pipe::simplex::<bool>().unwrap();
    let mut p = Process::new(program, (theirs, contain, fork_server)).contain(Contain::Off);
    let (contain, method) = (CONTAINS[contain as usize], fork_server);
    p.start().unwrap();
    let answer = ours.recv();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0), "the program survived its task's kill 0 ({contain:?}, fork server {method})");
    assert_eq!(
        answer.ok(),
        Some(true),
        "the task failed of SIGTERM, the pool went on ({contain:?}, fork server {method})"
    );
}

#[test]
fn a_task_that_signals_its_process_group_costs_only_itself() {
    for fork_server in [false, true] {
        for contain in 0..CONTAINS.len() as u8 {
            survives(contain, fork_server);
        }
    }
}
