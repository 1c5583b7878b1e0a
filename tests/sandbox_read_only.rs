//! `Sandbox::read_only_syscalls`: a task that creates, opens for writing, removes,
//! renames, makes a directory or changes permissions fails naming the call and the rule,
//! and the file system is unchanged; reading, writing to stdout, a large result (shared
//! through a memfd) and the worker's own socket still work.
#![cfg(feature = "sandbox")]

use std::path::PathBuf;

use multiproc::{Pool, Sandbox, TaskError};

multiproc::test_init!();

fn pool() -> Pool {
    Pool::builder().processes(1).sandbox(Sandbox::new().read_only_syscalls()).build().unwrap()
}

/// A fresh directory with one file, `f`, in it.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("multiproc-ro-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("f"), b"kept").unwrap();
    dir
}

fn create(dir: PathBuf) -> String {
    format!("{:?}", std::fs::File::create(dir.join("new")))
}

fn append(dir: PathBuf) -> String {
    format!("{:?}", std::fs::OpenOptions::new().append(true).open(dir.join("f")))
}

fn remove(dir: PathBuf) -> String {
    format!("{:?}", std::fs::remove_file(dir.join("f")))
}

fn rename(dir: PathBuf) -> String {
    format!("{:?}", std::fs::rename(dir.join("f"), dir.join("g")))
}

fn mkdir(dir: PathBuf) -> String {
    format!("{:?}", std::fs::create_dir(dir.join("sub")))
}

fn chmod(dir: PathBuf) -> String {
    use std::os::unix::fs::PermissionsExt;
    format!("{:?}", std::fs::set_permissions(dir.join("f"), std::fs::Permissions::from_mode(0o600)))
}

fn symlink(dir: PathBuf) -> String {
    format!("{:?}", std::os::unix::fs::symlink(dir.join("f"), dir.join("l")))
}

/// Reads the file and the directory, prints, and returns 4 MiB (more than a frame
/// carries inline).
fn read_and_return(dir: PathBuf) -> (String, usize, Vec<u8>) {
    let text = std::fs::read_to_string(dir.join("f")).unwrap();
    let entries = std::fs::read_dir(&dir).unwrap().count();
    println!("a read-only task may still print");
    (text, entries, vec![7u8; 4 << 20])
}

fn assert_denied(r: Result<String, TaskError>, message: &str) {
    let err = r.unwrap_err();
    assert!(matches!(err, TaskError::WorkerDied { .. }), "{err}");
    assert!(err.to_string().contains(message), "{err}");
}

#[test]
fn it_denies_each_change_to_the_file_system_naming_the_call() {
    let dir = scratch("deny");
    let pool = pool();
    let rule = "denied (read-only syscalls)";
    assert_denied(pool.apply(create, dir.clone()), "sandbox: `openat` for writing denied (read-only syscalls)");
    assert_denied(pool.apply(append, dir.clone()), "sandbox: `openat` for writing denied");
    assert_denied(pool.apply(remove, dir.clone()), rule);
    assert_denied(pool.apply(rename, dir.clone()), rule);
    assert_denied(pool.apply(mkdir, dir.clone()), rule);
    assert_denied(pool.apply(chmod, dir.clone()), rule);
    assert_denied(pool.apply(symlink, dir.clone()), rule);
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["f"], "nothing was changed");
    assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"kept");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn it_allows_reading_printing_and_large_results() {
    let dir = scratch("allow");
    let pool = pool();
    for _ in 0..3 {
        let (text, entries, big) = pool.apply(read_and_return, dir.clone()).unwrap();
        assert_eq!((text.as_str(), entries, big.len()), ("kept", 1, 4 << 20));
    }
    assert_eq!(pool.stats().workers_started, 1, "no worker died");
    // Without the preset the same task changes the file system.
    let open = Pool::builder().processes(1).sandbox(Sandbox::new()).build().unwrap();
    assert!(open.apply(mkdir, dir.clone()).unwrap().starts_with("Ok"));
    assert!(dir.join("sub").is_dir());
    let _ = std::fs::remove_dir_all(&dir);
}
