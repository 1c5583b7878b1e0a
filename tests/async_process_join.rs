//! A process's end as a future (`Process::join_async`), waited on together with a
//! connection and a pool result on a current-thread runtime with a ticker: the child only
//! exits once the ticker has set an event, so a join that blocked the runtime's one thread
//! would never end. Whichever comes first wins a `select!`, as with Python's
//! `multiprocessing.connection.wait` over sentinels and connections.

#[path = "common/ticker.rs"]
mod ticker;

use multiproc::{Connection, Error, Event, Pipe, Pool, Process};

multiproc::test_init!();

fn exit_after((go, code): (Event, i32)) {
    go.wait().unwrap();
    std::process::exit(code);
}

fn talk_then_exit((go, conn): (Event, Connection<u32>)) {
    conn.send(1).unwrap();
    go.wait().unwrap();
}

fn wait_for(go: Event) -> u32 {
    go.wait().unwrap();
    5
}

#[test]
fn join_async_waits_for_the_exit_without_blocking_the_runtime() {
    let go = Event::new().unwrap();
    let mut p = Process::new(exit_after, (go.clone(), 7));
    p.start().unwrap();
    let rt = ticker::runtime();
    let (code, ticks) = rt.block_on(async {
        let ticks = ticker::spawn_ticker(go.clone(), 20);
        let code = p.join_async().await.unwrap();
        (code, ticks.now())
    });
    assert_eq!(code, 7);
    assert!(ticks >= 20);
    assert_eq!(p.exitcode(), Some(7));
    // Joined already: ready at once, again.
    assert_eq!(rt.block_on(p.join_async()).unwrap(), 7);
}

#[test]
fn a_process_a_connection_and_a_pool_result_waited_on_together() {
    let go = Event::new().unwrap();
    let (mine, theirs) = Pipe::duplex::<u32>().unwrap();
    let mut p = Process::new(talk_then_exit, (go.clone(), theirs));
    p.start().unwrap();
    let pool = Pool::new(1).unwrap();
    let never = Event::new().unwrap();
    let result = pool.apply_async(wait_for, never.clone());
    let rt = ticker::runtime();
    let order = rt.block_on(async {
        let mut result = std::pin::pin!(result);
        let mut order = Vec::new();
        // First the message (sent at once), then the exit (once the ticker says so); the
        // pool's task is still waiting throughout.
        for _ in 0..2 {
            tokio::select! {
                biased;
                m = mine.recv_async(), if order.is_empty() => order.push(format!("message {}", m.unwrap())),
                code = p.join_async() => order.push(format!("exit {}", code.unwrap())),
                r = &mut result => order.push(format!("result {r:?}")),
            }
            if order.len() == 1 {
                ticker::spawn_ticker(go.clone(), 5);
            }
        }
        never.set();
        order.push(format!("result {}", result.await.unwrap()));
        order
    });
    assert_eq!(order, ["message 1", "exit 0", "result 5"]);
}

#[test]
fn join_async_on_a_process_never_started_is_an_error() {
    let p = Process::new(exit_after, (Event::new().unwrap(), 0));
    let rt = ticker::runtime();
    assert!(matches!(rt.block_on(p.join_async()), Err(Error::State(_))));
}
