//! Containment of a process a task starts as `daemon` (see contain_common::escape): it
//! dies with its worker when the pool closes, when its task times out, when the pool's
//! owner is SIGKILLed, and with a `Process` child that returns; with a cgroup where one
//! can be had and with the process-tree fallback.

use multiproc::Contain;

mod contain_common;
use contain_common::*;

multiproc::test_init!();

const WAY: &str = "daemon";

#[test]
fn dies_when_the_pool_closes() {
    pool_close_join(WAY, Contain::Auto);
}

#[test]
fn dies_when_its_task_times_out() {
    pool_timeout(WAY, Contain::Auto);
}

#[test]
fn dies_when_the_owner_is_sigkilled() {
    owner_killed(WAY, "auto");
}

#[test]
fn dies_when_the_pool_closes_contained_by_its_process_tree() {
    pool_close_join(WAY, Contain::ProcessTree);
}

#[test]
fn dies_when_its_task_times_out_contained_by_its_process_tree() {
    pool_timeout(WAY, Contain::ProcessTree);
}

#[test]
fn dies_when_the_owner_is_sigkilled_contained_by_its_process_tree() {
    owner_killed(WAY, "process-tree");
}

#[test]
fn dies_with_a_process_child() {
    process_returns(WAY, Contain::Auto);
}

#[test]
fn dies_with_a_process_child_contained_by_its_process_tree() {
    process_returns(WAY, Contain::ProcessTree);
}
