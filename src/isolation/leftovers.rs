//! Cgroups whose owner is gone, removed when the next owner first looks at the base.
//!
//! An owner removes its children's cgroups, and a guard does it for an owner that is
//! SIGKILLed; but an owner killed while a child is still starting (after the child's
//! cgroup was made, before its guard runs: about a millisecond) leaves that cgroup,
//! empty, with no one to remove it. So the first time a process probes the cgroup base
//! (`cgroup_base`), it removes, under it, the cgroups named after an owner that no longer
//! exists.
//!
//! Invariant: only a cgroup this crate names (`multiproc-<pid>-<n>`,
//! `multiproc-<pid>-<n>-forks`, `multiproc-probe-<pid>`) whose owner `<pid>` is neither
//! this process nor any process of this pid namespace is touched, and only removed when
//! the kernel allows it: when nothing is in it or under it. A cgroup still holding a
//! process (a child still dying, its guard on the way) is left to its guard.
//!
//! Limit: the pid in a name is read in this process's pid namespace. An owner in another
//! pid namespace sharing this very cgroup could see an empty cgroup of its own removed
//! (its child's start then fails and says so); multiproc does not start such owners.

use std::path::Path;

use crate::sys;

/// The owner's pid in the name of a cgroup multiproc makes under a base, or `None` for
/// any other name (left alone whatever it is).
fn owner_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("multiproc-")?;
    if let Some(pid) = rest.strip_prefix("probe-") {
        return number(pid);
    }
    let (pid, rest) = rest.split_once('-')?;
    let n = rest.strip_suffix("-forks").unwrap_or(rest);
    number(n)?;
    number(pid)
}

/// A decimal number with nothing else in it.
fn number(s: &str) -> Option<u32> {
    s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse().ok()).flatten()
}

/// Whether the cgroup `name` is one an owner that is gone left behind.
fn left_behind(name: &str, me: u32, exists: impl Fn(u32) -> bool) -> bool {
    owner_of(name).is_some_and(|pid| pid != me && !exists(pid))
}

/// Removes, under `base`, the cgroups owners that are gone left behind (see the module's
/// invariant); returns how many went.
pub(super) fn remove_under(base: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(base) else { return 0 };
    let me = sys::proc::getpid();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if left_behind(name, me, sys::proc::exists) && sys::contain::cgroup_remove_empty_tree(&entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_names_multiproc_gives_its_cgroups_have_an_owner() {
        assert_eq!(owner_of("multiproc-412-7"), Some(412));
        assert_eq!(owner_of("multiproc-412-7-forks"), Some(412));
        assert_eq!(owner_of("multiproc-probe-99"), Some(99));
        for other in ["multiproc-412", "multiproc-412-x", "multiproc--7", "multiproc-4a-7", "system.slice", "w7"] {
            assert_eq!(owner_of(other), None, "{other}");
        }
        assert_eq!(owner_of("multiproc-412-7-forks-more"), None);
        assert_eq!(owner_of("multiproc-+412-7"), None, "a sign is not a digit");
    }

    #[test]
    fn a_cgroup_is_left_behind_only_when_its_owner_is_gone() {
        let exists = |pid| pid == 300;
        assert!(left_behind("multiproc-200-1", 100, exists), "owner 200 is gone");
        assert!(!left_behind("multiproc-300-1", 100, exists), "owner 300 runs");
        assert!(!left_behind("multiproc-100-1-forks", 100, exists), "this process's own");
        assert!(!left_behind("user.slice", 100, exists), "not one of multiproc's");
    }
}
