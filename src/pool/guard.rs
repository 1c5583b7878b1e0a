//! User code that runs in the parent — a result's `Deserialize`, a callback — runs under a
//! guard: a panic there settles the one item it concerns with an error that names the
//! cause, and the thread that ran it (usually the pool's driver) goes on. Without it, one
//! panicking `Deserialize` took down the driver and every task in flight with it.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::de::DeserializeOwned;

use super::TaskError;
use crate::wire::codec;

/// Decodes a task's value; a decoding error or a panic in `R`'s `Deserialize` becomes
/// [`TaskError::Codec`] for `task`.
pub(crate) fn decode_value<R: DeserializeOwned>(task: &'static str, bytes: &[u8]) -> Result<R, TaskError> {
    match catch_unwind(AssertUnwindSafe(|| codec::decode::<R>(bytes))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(TaskError::Codec { task, message: e.to_string() }),
        Err(panic) => Err(decode_panicked(task, panic.as_ref())),
    }
}

/// The error of a value whose `Deserialize` panicked in the parent with `payload`.
pub(crate) fn decode_panicked(task: &'static str, payload: &(dyn Any + Send)) -> TaskError {
    TaskError::Codec {
        task,
        message: format!("decoding the result panicked in the parent: {}", panic_message(payload)),
    }
}

/// The message a panic carried, or a placeholder for a payload that is not a string.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Touchy;

    impl<'de> serde::Deserialize<'de> for Touchy {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            panic!("touchy refuses to decode")
        }
    }

    #[test]
    fn a_panicking_deserialize_is_a_codec_error_naming_the_panic() {
        let bytes = codec::encode(&1u8).unwrap();
        match decode_value::<Touchy>("t", &bytes) {
            Err(TaskError::Codec { task: "t", message }) => {
                assert!(message.contains("touchy refuses to decode"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_value_that_does_not_decode_is_a_codec_error() {
        assert!(matches!(decode_value::<String>("t", &[0xff, 0xff]), Err(TaskError::Codec { .. })));
        assert_eq!(decode_value::<u8>("t", &codec::encode(&7u8).unwrap()), Ok(7));
    }
}
