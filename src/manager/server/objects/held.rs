//! Proxies stored inside containers: how a container finds them in the bytes it stores,
//! and what it tells the registry, so that it keeps their objects alive (as Python's
//! manager does) until the value holding them is removed or the container is freed.
//!
//! A proxy encodes the server's run name (16 random bytes, see `SessionReady`) followed
//! by its transit token and its object id (see `handle`). The server never decodes the
//! values it stores, but it can find its own run name in them: each occurrence followed
//! by a token the registry knows for that object is a stored proxy. A value that merely
//! contains the same 16 random bytes and a matching token by chance is not a concern.

/// What a container tells the registry about the values it stores and lets go of; the
/// registry keeps one reference per stored proxy, charged to the container.
pub(crate) trait Held {
    /// `value` is now stored: its proxies' references in transit become the container's.
    fn stored(&self, value: &[u8]);
    /// `value` is gone (overwritten, cleared): the container's references in it go.
    fn dropped(&self, value: &[u8]);
    /// `value` was removed and is sent to the requester, who decodes (adopts) it: the
    /// container's references in it travel with it, as a sent proxy's do.
    fn taken(&self, value: &[u8]);
}

/// The (token, object id) pairs of the proxies of the server named `server` in `value`.
pub(crate) fn proxies_in(value: &[u8], server: &[u8; 16]) -> Vec<(u64, u64)> {
    let mut found = Vec::new();
    let mut rest = value;
    while let Some(at) = find(rest, server) {
        rest = &rest[at + server.len()..];
        let Some((token, n)) = varint(rest) else { continue };
        let Some((id, _)) = varint(&rest[n..]) else { continue };
        found.push((token, id));
    }
    found
}

fn find(haystack: &[u8], needle: &[u8; 16]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = haystack[from..].iter().position(|&b| b == needle[0]) {
        let at = from + i;
        if haystack.get(at..at + needle.len()) == Some(&needle[..]) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// A postcard varint `u64` and how many bytes it took.
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut n = 0u64;
    for (i, &byte) in b.iter().take(10).enumerate() {
        n |= u64::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize)]
    struct Like {
        address: String,
        authkey: Vec<u8>,
        server: [u8; 16],
        token: u64,
        id: u64,
        types: String,
    }

    #[test]
    fn proxies_are_found_where_they_are_nested() {
        let server = [7u8; 16];
        let p = |token, id| Like { address: "a".into(), authkey: vec![1; 3], server, token, id, types: "t".into() };
        let value = (1u8, vec![p(300, 2), p(5, 1 << 40)], "tail");
        let bytes = crate::wire::codec::encode(&value).unwrap();
        assert_eq!(proxies_in(&bytes, &server), [(300, 2), (5, 1 << 40)]);
        assert_eq!(proxies_in(&bytes, &[8; 16]), []);
        assert_eq!(proxies_in(&bytes[..bytes.len() / 2], &server), [(300, 2)]);
    }
}
