//! Mutual authentication of a manager connection: an HMAC challenge-response each way,
//! as Python's `multiprocessing.connection` does, on HMAC-SHA256 (the `hmac` and `sha2`
//! crates; nothing cryptographic is written here).
//!
//! 1. The server sends a random 32-byte challenge.
//! 2. The client answers `HMAC(key, "multiproc-manager client" ‖ challenge)` and sends its
//!    own challenge.
//! 3. The server checks the answer in constant time. A wrong one gets a refusal and the
//!    connection is closed; otherwise it proves itself with
//!    `HMAC(key, "multiproc-manager server" ‖ client challenge)`.
//! 4. The client checks that proof, so it never talks to a server that lacks the key.
//!
//! The two directions use different labels, so an answer can never be replayed as a proof.
//! Nothing is served before step 3 succeeds, and frames before it are limited to
//! [`AUTH_MAX_FRAME`] bytes.

use std::io::Read;
use std::time::Instant;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::protocol::{KIND_ANSWER, KIND_CHALLENGE, KIND_VERDICT, MANAGER_PROTOCOL};
use crate::wire::FrameError;
use crate::wire::frame::Channel;

/// The largest frame accepted before authentication.
pub(crate) const AUTH_MAX_FRAME: u32 = 4096;

const MAGIC: [u8; 8] = *b"MPMGR\0\0\x01";
const CLIENT_LABEL: &[u8] = b"multiproc-manager client";
const SERVER_LABEL: &[u8] = b"multiproc-manager server";

#[derive(Debug, Serialize, Deserialize)]
struct Challenge {
    magic: [u8; 8],
    protocol: u16,
    nonce: [u8; 32],
}

#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    mac: [u8; 32],
    nonce: [u8; 32],
}

#[derive(Debug, Serialize, Deserialize)]
enum Verdict {
    Welcome { mac: [u8; 32] },
    Refused,
}

/// Why a connection was not authenticated.
#[derive(Debug)]
pub(crate) enum AuthError {
    /// The server does not accept our key.
    Refused,
    /// The server could not prove it knows the key.
    ServerUnproven,
    /// The peer does not speak this protocol, or speaks another version of it.
    Protocol(String),
    /// The connection failed.
    Frame(FrameError),
}

impl From<FrameError> for AuthError {
    fn from(e: FrameError) -> AuthError {
        AuthError::Frame(e)
    }
}

/// Fills `buf` with random bytes from the kernel.
pub(crate) fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

fn mac(key: &[u8], label: &[u8], nonce: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(label);
    m.update(nonce);
    m
}

fn sign(key: &[u8], label: &[u8], nonce: &[u8]) -> [u8; 32] {
    mac(key, label, nonce).finalize().into_bytes().into()
}

fn verify(key: &[u8], label: &[u8], nonce: &[u8], tag: &[u8]) -> bool {
    // `verify_slice` compares in constant time.
    mac(key, label, nonce).verify_slice(tag).is_ok()
}

fn expect<T: serde::de::DeserializeOwned>(ch: &mut Channel, kind: u8, deadline: Instant) -> Result<T, AuthError> {
    let frame = ch.recv(Some(deadline))?;
    if frame.kind != kind {
        return Err(AuthError::Protocol(format!(
            "expected frame kind {kind:#04x} during authentication, got {:#04x}",
            frame.kind
        )));
    }
    frame.decode().map_err(|e| AuthError::Protocol(e.to_string()))
}

/// The server's side; on success the peer has proven it knows `key`.
pub(crate) fn serve(ch: &mut Channel, key: &[u8], deadline: Instant) -> Result<(), AuthError> {
    let mut nonce = [0u8; 32];
    random_bytes(&mut nonce).map_err(|e| AuthError::Frame(e.into()))?;
    ch.writer.queue(KIND_CHALLENGE, &Challenge { magic: MAGIC, protocol: MANAGER_PROTOCOL, nonce })?;
    ch.writer.flush(Some(deadline))?;
    let answer: Answer = expect(ch, KIND_ANSWER, deadline)?;
    if !verify(key, CLIENT_LABEL, &nonce, &answer.mac) {
        let _ = ch.writer.queue(KIND_VERDICT, &Verdict::Refused);
        let _ = ch.writer.flush(Some(deadline));
        return Err(AuthError::Refused);
    }
    let proof = sign(key, SERVER_LABEL, &answer.nonce);
    ch.writer.queue(KIND_VERDICT, &Verdict::Welcome { mac: proof })?;
    ch.writer.flush(Some(deadline))?;
    Ok(())
}

/// The client's side; on success the server has proven it knows `key`.
pub(crate) fn answer(ch: &mut Channel, key: &[u8], deadline: Instant) -> Result<(), AuthError> {
    let challenge: Challenge = expect(ch, KIND_CHALLENGE, deadline)?;
    if challenge.magic != MAGIC {
        return Err(AuthError::Protocol("the peer is not a multiproc manager".into()));
    }
    if challenge.protocol != MANAGER_PROTOCOL {
        return Err(AuthError::Protocol(format!(
            "the manager speaks protocol {}, this program {MANAGER_PROTOCOL}",
            challenge.protocol
        )));
    }
    let mut nonce = [0u8; 32];
    random_bytes(&mut nonce).map_err(|e| AuthError::Frame(e.into()))?;
    let answer = Answer { mac: sign(key, CLIENT_LABEL, &challenge.nonce), nonce };
    ch.writer.queue(KIND_ANSWER, &answer)?;
    ch.writer.flush(Some(deadline))?;
    let verdict = match expect::<Verdict>(ch, KIND_VERDICT, deadline) {
        Ok(v) => v,
        // A server that refuses may close before we read its verdict.
        Err(AuthError::Frame(FrameError::Closed)) => return Err(AuthError::Refused),
        Err(e) => return Err(e),
    };
    match verdict {
        Verdict::Refused => Err(AuthError::Refused),
        Verdict::Welcome { mac } if verify(key, SERVER_LABEL, &nonce, &mac) => Ok(()),
        Verdict::Welcome { .. } => Err(AuthError::ServerUnproven),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(server_key: &'static [u8], client_key: &'static [u8]) -> (Result<(), AuthError>, Result<(), AuthError>) {
        let (mut a, mut b) = Channel::pair(AUTH_MAX_FRAME).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let server = std::thread::spawn(move || serve(&mut a, server_key, deadline));
        let client = answer(&mut b, client_key, deadline);
        (server.join().unwrap(), client)
    }

    #[test]
    fn the_same_key_authenticates_both_ways() {
        let (s, c) = run(b"secret", b"secret");
        assert!(s.is_ok() && c.is_ok(), "{s:?} {c:?}");
    }

    #[test]
    fn a_wrong_key_is_refused_on_both_sides() {
        let (s, c) = run(b"secret", b"guess");
        assert!(matches!(s, Err(AuthError::Refused)), "{s:?}");
        assert!(matches!(c, Err(AuthError::Refused)), "{c:?}");
    }

    #[test]
    fn answers_and_proofs_use_different_labels() {
        let n = [7u8; 32];
        assert_ne!(sign(b"k", CLIENT_LABEL, &n), sign(b"k", SERVER_LABEL, &n));
        assert!(verify(b"k", CLIENT_LABEL, &n, &sign(b"k", CLIENT_LABEL, &n)));
        assert!(!verify(b"k", CLIENT_LABEL, &n, &[0; 31]));
    }
}
