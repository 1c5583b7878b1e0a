//! A user type registered as a shared object, called from several processes.

use multiproc::manager::{ObjectProxy, SharedObject};
use multiproc::{Manager, ManagerError, Process};
use serde::{Deserialize, Serialize};

multiproc::test_init!();

#[derive(Serialize, Deserialize)]
struct Limits {
    max: u64,
}

struct Account {
    balance: u64,
    max: u64,
}

impl SharedObject for Account {
    type Init = Limits;
    fn create(init: Limits) -> Account {
        Account { balance: 0, max: init.max }
    }
}

impl Account {
    fn deposit(&mut self, n: u64) -> Result<u64, String> {
        if self.balance + n > self.max {
            return Err(format!("over the limit of {}", self.max));
        }
        self.balance += n;
        Ok(self.balance)
    }
    fn balance(&mut self, _: ()) -> u64 {
        self.balance
    }
}

fn depositor(a: ObjectProxy<Account>) {
    for _ in 0..100 {
        a.call(Account::deposit, 1).unwrap().unwrap();
    }
}

#[test]
fn methods_run_in_the_server_one_at_a_time() {
    let m = Manager::start().unwrap();
    let a: ObjectProxy<Account> = m.create_object(Limits { max: 1000 }).unwrap();
    let mut ps: Vec<Process> = (0..3).map(|_| Process::new(depositor, a.clone())).collect();
    for p in &mut ps {
        p.start().unwrap();
    }
    for p in &ps {
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
    assert_eq!(a.call(Account::balance, ()).unwrap(), 300);
    assert_eq!(a.call(Account::deposit, 800).unwrap(), Err("over the limit of 1000".to_string()));
}

fn explode(_: &mut Account, _: ()) -> u64 {
    panic!("method exploded")
}

#[test]
fn a_panicking_method_is_an_error_and_the_object_stays() {
    let m = Manager::start().unwrap();
    let a: ObjectProxy<Account> = m.create_object(Limits { max: 10 }).unwrap();
    a.call(Account::deposit, 4).unwrap().unwrap();
    let e = a.call(explode, ()).unwrap_err();
    assert!(matches!(e, ManagerError::Panicked(ref m) if m.contains("method exploded")), "{e}");
    assert_eq!(a.call(|acc: &mut Account, ()| acc.balance, ()).unwrap(), 4);
}
