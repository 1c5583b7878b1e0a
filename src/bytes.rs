//! `Bytes`: a byte buffer that crosses process boundaries in one copy.

use std::fmt;
use std::ops::{Deref, DerefMut};

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A byte buffer that serde encodes as one `bytes` value: the fast way to send byte
/// buffers to tasks, queues and pipes.
///
/// A plain `Vec<u8>` goes through serde one element at a time (about 1 GiB/s); `Bytes`
/// is copied in one go (tens of GiB/s), so a large payload costs what its transport
/// costs. It derefs to `[u8]` (and `Vec<u8>` through [`Bytes::0`](Bytes)), and
/// converts from and into `Vec<u8>`.
///
/// ```
/// use multiproc::Bytes;
/// fn checksum(b: Bytes) -> u64 { b.iter().map(|&x| x as u64).sum() }
///
/// multiproc::init();
/// let pool = multiproc::Pool::new(2).unwrap();
/// let buffers: Vec<Bytes> = (0..4u8).map(|i| Bytes::from(vec![i; 1 << 16])).collect();
/// let sums = pool.map(checksum, buffers).unwrap();
/// assert_eq!(sums, [0, 1 << 16, 2 << 16, 3 << 16]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// An empty buffer.
    pub fn new() -> Bytes {
        Bytes(Vec::new())
    }

    /// The buffer, as a `Vec<u8>`.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Bytes {
        Bytes(v.to_vec())
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Vec<u8> {
        b.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte buffer")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes(v))
    }

    // Self-describing formats (e.g. JSON) may hand bytes over as a sequence of numbers.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            v.push(b);
        }
        Ok(Bytes(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::codec;

    #[test]
    fn round_trips_as_one_bytes_value() {
        let b = Bytes::from(vec![7u8; 1000]);
        let mut buf = Vec::new();
        codec::encode_into(&b, &mut buf).unwrap();
        // A varint length (2 bytes for 1000) and the bytes themselves.
        assert_eq!(buf.len(), 1002);
        let back: Bytes = codec::decode(&buf).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.len(), 1000);
        assert_eq!(Vec::from(back), vec![7u8; 1000]);
    }

    #[test]
    fn a_cut_buffer_is_an_error() {
        let mut buf = Vec::new();
        codec::encode_into(&Bytes::from(vec![1u8; 100]), &mut buf).unwrap();
        assert!(codec::decode::<Bytes>(&buf[..50]).is_err());
    }
}
