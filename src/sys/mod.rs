//! The system layer: every raw syscall and every `unsafe` block of the crate lives here.
//!
//! Layers above call these small, safe wrappers. Each `unsafe` block carries a
//! `// SAFETY:` line saying why it is sound. Linux only: pidfds, `PR_SET_PDEATHSIG`
//! and `SCM_RIGHTS` are the mechanisms the crate is built on.

mod clone;
pub(crate) mod contain;
mod ctor;
pub(crate) mod event;
pub(crate) mod exec;
pub(crate) mod fd;
pub(crate) mod fork;
pub(crate) mod futex;
pub(crate) mod limits;
pub(crate) mod mem;
pub(crate) mod mutex;
pub(crate) mod packet;
pub(crate) mod proc;
#[cfg(feature = "sandbox")]
pub(crate) mod sandbox;
pub(crate) mod shm;
pub(crate) mod sock;
pub(crate) mod unlinker;
