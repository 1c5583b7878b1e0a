//! The first exchange on a parent–child socket.
//!
//! The parent sends [`Hello`]: magic, protocol version, its build fingerprint, who the
//! child is, and what it is to run. The child checks magic, version and fingerprint
//! *before* it interprets any function offset, and answers with a [`Reply`].

use serde::{Deserialize, Serialize};

/// Frame kind of the parent's hello.
pub(crate) const KIND_HELLO: u8 = super::kinds::HANDSHAKE_HELLO;
/// Frame kind of the child's reply.
pub(crate) const KIND_REPLY: u8 = super::kinds::HANDSHAKE_REPLY;

/// Eight bytes that open every hello.
pub(crate) const MAGIC: [u8; 8] = *b"MPROC\0\x01\x00";

/// Bumped whenever a wire message changes shape.
pub(crate) const PROTOCOL_VERSION: u16 = 1;

/// The parent's first message.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub(crate) magic: [u8; 8],
    pub(crate) version: u16,
    pub(crate) fingerprint: u64,
    pub(crate) parent_pid: u32,
    pub(crate) parent_name: String,
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) max_frame: u32,
    /// Offset of the entry function from the anchor (see `spawn::identity`).
    pub(crate) entry: i64,
    /// The entry's type name, for messages.
    pub(crate) entry_name: String,
    // The entry's payload follows the encoded hello in the same frame, as raw bytes.
}

/// The child's answer.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// Everything matched; the child runs its entry now.
    Ready { magic: [u8; 8], pid: u32 },
    /// The child will not run: it was built differently, or speaks another version.
    Refused { reason: Refusal },
}

/// Why a child refused.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Refusal {
    /// The child's executable has another build fingerprint.
    WrongBinary { child_fingerprint: u64 },
    /// The child speaks another protocol version.
    Version { child_version: u16 },
}
