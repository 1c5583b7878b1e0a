//! serde + postcard, writing into caller-owned buffers so the hot path does not allocate.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::CodecError;

/// A postcard output that appends to a borrowed `Vec`, keeping its capacity between uses.
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    #[inline]
    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        self.0.push(b);
        Ok(())
    }

    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        // Integers arrive here as varints of 1 to 10 bytes: pushed one by one after one
        // reservation, they cost a third less than a copy of a constant size and far less
        // than a call to `memcpy` (once the largest single cost of encoding a map of
        // numbers).
        let v = &mut *self.0;
        if bytes.len() <= 10 {
            v.reserve(10);
            for &b in bytes {
                v.push(b);
            }
        } else {
            v.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends the encoding of `value` to `buf`. On error, `buf` is left as it was.
#[inline]
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = buf.len();
    // What `postcard::serialize_with_flavor` does (our flavor's `finalize` cannot fail),
    // written here so that it inlines: a map encodes one small value per item with it.
    let mut ser = postcard::Serializer { output: AppendTo(&mut *buf) };
    value.serialize(&mut ser).map_err(|e| {
        buf.truncate(start);
        CodecError { op: "encode", type_name: std::any::type_name::<T>(), message: e.to_string() }
    })
}

/// Encodes `value` into a new buffer.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut v = Vec::new();
    encode_into(value, &mut v)?;
    Ok(v)
}

/// Decodes a whole `T` from `bytes`; trailing bytes are an error. Inlined, with the
/// error built out of line: a map decodes one small value per item with it.
#[inline]
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let mut de = postcard::Deserializer::from_bytes(bytes);
    let v = T::deserialize(&mut de).map_err(|e| decode_error::<T>(e.to_string()))?;
    match de.finalize() {
        Ok([]) => Ok(v),
        Ok(rest) => Err(decode_error::<T>(format!("{} unexpected bytes after the value", rest.len()))),
        Err(e) => Err(decode_error::<T>(e.to_string())),
    }
}

#[cold]
fn decode_error<T>(message: String) -> CodecError {
    CodecError { op: "decode", type_name: std::any::type_name::<T>(), message }
}

/// Decodes a `T` from the front of `bytes`, returning the rest.
pub(crate) fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, &[u8]), CodecError> {
    postcard::take_from_bytes::<T>(bytes).map_err(|e| CodecError {
        op: "decode",
        type_name: std::any::type_name::<T>(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_buffer_capacity() {
        let mut buf = Vec::with_capacity(64);
        encode_into(&(7u64, "seven".to_string()), &mut buf).unwrap();
        let cap = buf.capacity();
        let back: (u64, String) = decode(&buf).unwrap();
        assert_eq!(back, (7, "seven".to_string()));
        buf.clear();
        encode_into(&(8u64, "eight".to_string()), &mut buf).unwrap();
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn garbage_is_an_error_naming_the_type() {
        let e = decode::<(u64, String)>(&[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(e.op, "decode");
        assert!(e.type_name.contains("String"), "{e}");
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut buf = encode(&5u32).unwrap();
        buf.push(0);
        assert!(decode::<u32>(&buf).unwrap_err().message.contains("unexpected"));
    }

    #[test]
    fn a_failing_serialize_leaves_the_buffer_alone() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("not today"))
            }
        }
        let mut buf = vec![1, 2, 3];
        let e = encode_into(&Refuses, &mut buf).unwrap_err();
        assert_eq!(buf, [1, 2, 3]);
        assert!(e.to_string().contains("Refuses"), "{e}");
    }
}
