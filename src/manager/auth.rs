//! The manager's authentication: the crate's HMAC challenge-response (`crate::auth`)
//! under the manager's own magic, protocol version and labels.

use std::time::Instant;

use crate::auth::{self, Scheme};
pub(crate) use crate::auth::{AUTH_MAX_FRAME, AuthError, random_bytes};
use crate::wire::frame::Channel;

use super::protocol::MANAGER_PROTOCOL;

const MANAGER: Scheme = Scheme {
    magic: *b"MPMGR\0\0\x01",
    protocol: MANAGER_PROTOCOL,
    client_label: b"multiproc-manager client",
    server_label: b"multiproc-manager server",
    server: "a multiproc manager",
};

/// The server's side; on success the peer has proven it knows `key`.
pub(crate) fn serve(ch: &mut Channel, key: &[u8], deadline: Instant) -> Result<(), AuthError> {
    auth::serve(ch, &MANAGER, key, deadline)
}

/// The client's side; on success the server has proven it knows `key`.
pub(crate) fn answer(ch: &mut Channel, key: &[u8], deadline: Instant) -> Result<(), AuthError> {
    auth::answer(ch, &MANAGER, key, deadline)
}
