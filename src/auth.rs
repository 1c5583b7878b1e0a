//! Mutual authentication of a connection (a manager's, or a `connection::Listener`'s):
//! an HMAC challenge-response each way, as Python's `multiprocessing.connection` does,
//! on HMAC-SHA256 (the `hmac` and `sha2` crates; nothing cryptographic is written here).
//! A [`Scheme`] names the protocol, so a key shared by a manager and a listener never
//! lets an answer meant for one open the other.
//!
//! 1. The server sends a random 32-byte challenge.
//! 2. The client answers `HMAC(key, client label ‖ challenge)` (for a manager, the label
//!    is "multiproc-manager client") and sends its own challenge.
//! 3. The server checks the answer in constant time. A wrong one gets a refusal and the
//!    connection is closed; otherwise it proves itself with
//!    `HMAC(key, server label ‖ client challenge)`.
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

use crate::wire::FrameError;
use crate::wire::frame::Channel;
use crate::wire::kinds::{AUTH_ANSWER as KIND_ANSWER, AUTH_CHALLENGE as KIND_CHALLENGE, AUTH_VERDICT as KIND_VERDICT};

/// The largest frame accepted before authentication.
pub(crate) const AUTH_MAX_FRAME: u32 = 4096;

/// Which protocol is being authenticated: what the challenge carries and the answers sign.
#[derive(Debug)]
pub(crate) struct Scheme {
    /// Sent in the challenge; a client refuses a server whose magic is another.
    pub(crate) magic: [u8; 8],
    /// The protocol version, sent in the challenge; a client refuses another.
    pub(crate) protocol: u16,
    /// Signed with the server's challenge by the client…
    pub(crate) client_label: &'static [u8],
    /// …and with the client's by the server: never the same, so no answer is a proof.
    pub(crate) server_label: &'static [u8],
    /// What the server is, for errors: "a multiproc manager".
    pub(crate) server: &'static str,
}

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
pub(crate) fn serve(ch: &mut Channel, scheme: &Scheme, key: &[u8], deadline: Instant) -> Result<(), AuthError> {
    let mut nonce = [0u8; 32];
    random_bytes(&mut nonce).map_err(|e| AuthError::Frame(e.into()))?;
    ch.writer.queue(KIND_CHALLENGE, &Challenge { magic: scheme.magic, protocol: scheme.protocol, nonce })?;
    ch.writer.flush(Some(deadline))?;
    let answer: Answer = expect(ch, KIND_ANSWER, deadline)?;
    if !verify(key, scheme.client_label, &nonce, &answer.mac) {
        let _ = ch.writer.queue(KIND_VERDICT, &Verdict::Refused);
        let _ = ch.writer.flush(Some(deadline));
        return Err(AuthError::Refused);
    }
    let proof = sign(key, scheme.server_label, &answer.nonce);
    ch.writer.queue(KIND_VERDICT, &Verdict::Welcome { mac: proof })?;
    ch.writer.flush(Some(deadline))?;
    Ok(())
}

/// The client's side; on success the server has proven it knows `key`.
pub(crate) fn answer(ch: &mut Channel, scheme: &Scheme, key: &[u8], deadline: Instant) -> Result<(), AuthError> {
    let challenge: Challenge = expect(ch, KIND_CHALLENGE, deadline)?;
    if challenge.magic != scheme.magic {
        return Err(AuthError::Protocol(format!("the peer is not {}", scheme.server)));
    }
    if challenge.protocol != scheme.protocol {
        return Err(AuthError::Protocol(format!(
            "{} speaks protocol {}, this program {}",
            scheme.server, challenge.protocol, scheme.protocol
        )));
    }
    let mut nonce = [0u8; 32];
    random_bytes(&mut nonce).map_err(|e| AuthError::Frame(e.into()))?;
    let answer = Answer { mac: sign(key, scheme.client_label, &challenge.nonce), nonce };
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
        Verdict::Welcome { mac } if verify(key, scheme.server_label, &nonce, &mac) => Ok(()),
        Verdict::Welcome { .. } => Err(AuthError::ServerUnproven),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const CLIENT_LABEL: &[u8] = b"test client";
    const SERVER_LABEL: &[u8] = b"test server";
    const TEST: Scheme = Scheme {
        magic: *b"MPTEST01",
        protocol: 1,
        client_label: CLIENT_LABEL,
        server_label: SERVER_LABEL,
        server: "a test server",
    };
    const OTHER: Scheme = Scheme { magic: *b"MPOTHER1", ..TEST };

    fn run_schemes(
        server_key: &'static [u8],
        client_key: &'static [u8],
        client_scheme: &'static Scheme,
    ) -> (Result<(), AuthError>, Result<(), AuthError>) {
        let (mut a, mut b) = Channel::pair(AUTH_MAX_FRAME).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let server = std::thread::spawn(move || serve(&mut a, &TEST, server_key, deadline));
        let client = answer(&mut b, client_scheme, client_key, deadline);
        drop(b);
        (server.join().unwrap(), client)
    }

    fn run(server_key: &'static [u8], client_key: &'static [u8]) -> (Result<(), AuthError>, Result<(), AuthError>) {
        run_schemes(server_key, client_key, &TEST)
    }

    #[test]
    fn a_client_of_another_scheme_refuses_the_server() {
        let (_, c) = run_schemes(b"k", b"k", &OTHER);
        assert!(matches!(c, Err(AuthError::Protocol(ref m)) if m.contains("a test server")), "{c:?}");
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
