//! `Bytes`: a byte buffer that crosses process boundaries in one copy.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::sys::mem::Mapped;

/// A byte buffer that serde encodes as one `bytes` value: the fast way to send byte
/// buffers to tasks, queues and pipes.
///
/// A plain `Vec<u8>` goes through serde one element at a time (about 1 GiB/s); `Bytes`
/// is copied in one go (tens of GiB/s), so a large payload costs what its transport
/// costs. A large buffer that reaches a pool's task (or comes back as a result) in
/// shared memory is not copied at all: the `Bytes` reads that memory. It derefs to
/// `[u8]` (mutable access copies such a buffer first), and converts from and into
/// `Vec<u8>`.
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
#[derive(Clone, Default)]
pub struct Bytes {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    Owned(Vec<u8>),
    /// `len` bytes at `at` in a received body that nobody writes any more.
    Shared {
        map: Arc<Mapped>,
        at: usize,
        len: usize,
    },
}

impl Default for Repr {
    fn default() -> Repr {
        Repr::Owned(Vec::new())
    }
}

/// Decoded buffers from this size on share the body they come from instead of copying.
const SHARE_AT: usize = 16 * 1024;

thread_local! {
    /// The received body `Bytes` being decoded on this thread may share.
    static SOURCE: RefCell<Option<Arc<Mapped>>> = const { RefCell::new(None) };
}

/// Runs `decode` with large `Bytes` decoded from inside `body` sharing it (with `None`,
/// copying as always). The caller promises that nobody writes `body` while a `Bytes`
/// holds it: whoever wrote it is told, through `Arc::strong_count`, that it is kept.
pub(crate) fn sharing<R>(body: Option<&Arc<Mapped>>, decode: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<Mapped>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            SOURCE.with(|s| *s.borrow_mut() = prev);
        }
    }
    let prev = SOURCE.with(|s| std::mem::replace(&mut *s.borrow_mut(), body.cloned()));
    let _restore = Restore(prev);
    decode()
}

/// `v` as a `Bytes` that shares the body being decoded, if it lies inside it.
fn shared(v: &[u8]) -> Option<Bytes> {
    if v.len() < SHARE_AT {
        return None;
    }
    SOURCE.with(|s| {
        let s = s.borrow();
        let map = s.as_ref()?;
        let base = map.bytes().as_ptr() as usize;
        let at = (v.as_ptr() as usize).checked_sub(base)?;
        (at + v.len() <= map.bytes().len()).then(|| Bytes { repr: Repr::Shared { map: map.clone(), at, len: v.len() } })
    })
}

impl Bytes {
    /// An empty buffer.
    ///
    /// ```
    /// let b = multiproc::Bytes::new();
    /// assert!(b.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new() -> Bytes {
        Bytes::default()
    }

    /// The buffer, as a `Vec<u8>`.
    ///
    /// ```
    /// let b = multiproc::Bytes::from(vec![1u8, 2]);
    /// assert_eq!(b.into_vec(), [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn into_vec(self) -> Vec<u8> {
        match self.repr {
            Repr::Owned(v) => v,
            Repr::Shared { .. } => self.to_vec(),
        }
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.repr {
            Repr::Owned(v) => v,
            Repr::Shared { map, at, len } => &map.bytes()[*at..*at + *len],
        }
    }
}

impl DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        if let Repr::Shared { .. } = self.repr {
            self.repr = Repr::Owned(self.to_vec());
        }
        match &mut self.repr {
            Repr::Owned(v) => v,
            Repr::Shared { .. } => unreachable!("made owned above"),
        }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Bytes").field(&&self[..]).finish()
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        self[..] == other[..]
    }
}

impl Eq for Bytes {}

impl PartialOrd for Bytes {
    fn partial_cmp(&self, other: &Bytes) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bytes {
    fn cmp(&self, other: &Bytes) -> Ordering {
        self[..].cmp(&other[..])
    }
}

impl Hash for Bytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self[..].hash(state)
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes { repr: Repr::Owned(v) }
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Bytes {
        Bytes::from(v.to_vec())
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Vec<u8> {
        b.into_vec()
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self)
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
        Ok(shared(v).unwrap_or_else(|| Bytes::from(v)))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    // Self-describing formats (e.g. JSON) may hand bytes over as a sequence of numbers.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            v.push(b);
        }
        Ok(Bytes::from(v))
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
    fn large_buffers_decoded_from_a_shared_body_share_it_and_copy_when_written() {
        let mut buf = Vec::new();
        codec::encode_into(&(Bytes::from(vec![5u8; 100_000]), Bytes::from(vec![6u8; 10])), &mut buf).unwrap();
        let fd = crate::sys::mem::memfd_with(&[&buf]).unwrap();
        let map = Arc::new(Mapped::open(&fd, None).unwrap());
        let (mut big, small): (Bytes, Bytes) = sharing(Some(&map), || codec::decode(map.bytes()).unwrap());
        assert!(matches!(big.repr, Repr::Shared { .. }) && matches!(small.repr, Repr::Owned(_)));
        assert_eq!(Arc::strong_count(&map), 2);
        assert_eq!((big.len(), big[99_999], &small[..]), (100_000, 5, &[6u8; 10][..]));
        big[0] = 9;
        assert!(matches!(big.repr, Repr::Owned(_)));
        assert_eq!(Arc::strong_count(&map), 1);
        assert_eq!((big[0], big[1]), (9, 5));
        // Outside `sharing`, and for bytes from elsewhere, decoding copies.
        let copied: (Bytes, Bytes) = codec::decode(map.bytes()).unwrap();
        assert!(matches!(copied.0.repr, Repr::Owned(_)));
        let elsewhere: (Bytes, Bytes) = sharing(Some(&map), || codec::decode(&buf).unwrap());
        assert!(matches!(elsewhere.0.repr, Repr::Owned(_)));
        assert_eq!(Arc::strong_count(&map), 1);
    }

    #[test]
    fn a_cut_buffer_is_an_error() {
        let mut buf = Vec::new();
        codec::encode_into(&Bytes::from(vec![1u8; 100]), &mut buf).unwrap();
        assert!(codec::decode::<Bytes>(&buf[..50]).is_err());
    }
}
