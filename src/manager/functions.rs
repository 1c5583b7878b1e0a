//! Functions a client names for the server to run: `modify` updates and custom objects.
//!
//! The server is the same build as its clients (checked at the session hello; a
//! different build is refused these requests), so a client sends two offsets (see
//! `spawn::identity`): a trampoline monomorphised over the value and function types, and
//! the user's function. The trampoline decodes, calls under `catch_unwind` (a panic
//! becomes an error reply and leaves the stored value as it was), and encodes.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::protocol::RemoteError;
use super::shared_object::SharedObject;
use crate::spawn::identity::{self, SameBuild};
use crate::wire::codec;

/// Runs a `modify` on an optional stored value, writing the new value's bytes to `out`.
pub(crate) type ModifyFn =
    fn(proof: SameBuild, f: i64, old: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), RemoteError>;
/// Builds a custom object from its encoded initial value.
pub(crate) type CreateFn = fn(init: &[u8]) -> Result<Box<dyn Any + Send>, RemoteError>;
/// Calls a method on a custom object, writing the encoded result to `out`.
pub(crate) type CallFn = fn(
    proof: SameBuild,
    obj: &mut (dyn Any + Send),
    method: i64,
    arg: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RemoteError>;

fn panic_message(p: Box<dyn Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".into())
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RemoteError> {
    codec::decode(bytes).map_err(|e| RemoteError::Codec(e.to_string()))
}

fn encode<T: Serialize>(v: &T, out: &mut Vec<u8>) -> Result<(), RemoteError> {
    codec::encode_into(v, out).map_err(|e| RemoteError::Codec(e.to_string()))
}

fn run<R>(name: &str, f: impl FnOnce() -> R) -> Result<R, RemoteError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| RemoteError::Panicked(format!("`{name}`: {}", panic_message(p))))
}

fn modify_option<V, F>(proof: SameBuild, f: i64, old: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), RemoteError>
where
    V: Serialize + DeserializeOwned + 'static,
    F: Fn(Option<V>) -> V + Copy + 'static,
{
    // The client made `f` with `encode_fn::<F, fn(Option<V>) -> V>` in `modify_option_fn`.
    let f: F = proof.decode_fn::<F>(f);
    let old = old.map(decode::<V>).transpose()?;
    let new = run(std::any::type_name::<F>(), || f(old))?;
    encode(&new, out)
}

fn modify_value<V, F>(proof: SameBuild, f: i64, old: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), RemoteError>
where
    V: Serialize + DeserializeOwned + 'static,
    F: Fn(V) -> V + Copy + 'static,
{
    // As in `modify_option`, for `encode_fn::<F, fn(V) -> V>` in `modify_value_fn`.
    let f: F = proof.decode_fn::<F>(f);
    let old = decode::<V>(old.ok_or_else(|| RemoteError::Misuse("no value to modify".into()))?)?;
    let new = run(std::any::type_name::<F>(), || f(old))?;
    encode(&new, out)
}

/// The offsets for `dict.modify(key, f)`: `f` gets the value if present.
pub(crate) fn modify_option_fn<V, F>(f: F) -> (i64, i64)
where
    V: Serialize + DeserializeOwned + 'static,
    F: Fn(Option<V>) -> V + Copy + 'static,
{
    let tramp: ModifyFn = modify_option::<V, F>;
    (identity::offset_of(tramp as usize), identity::encode_fn::<F, fn(Option<V>) -> V>(f))
}

/// The offsets for `value.modify(f)`, `list.modify(i, f)`: `f` gets the value.
pub(crate) fn modify_value_fn<V, F>(f: F) -> (i64, i64)
where
    V: Serialize + DeserializeOwned + 'static,
    F: Fn(V) -> V + Copy + 'static,
{
    let tramp: ModifyFn = modify_value::<V, F>;
    (identity::offset_of(tramp as usize), identity::encode_fn::<F, fn(V) -> V>(f))
}

/// Runs the `modify` a client named, if the client is this build.
pub(crate) fn run_modify(
    same_build: Option<SameBuild>,
    tramp: i64,
    f: i64,
    old: Option<&[u8]>,
    out: &mut Vec<u8>,
) -> Result<(), RemoteError> {
    let proof = same_build.ok_or(RemoteError::DifferentBuild)?;
    // A client of this build makes `tramp` with `offset_of` of a `ModifyFn` (`modify_*_fn`).
    let tramp = proof.function_at::<ModifyFn>(tramp);
    tramp(proof, f, old, out)
}

fn create<T: SharedObject>(init: &[u8]) -> Result<Box<dyn Any + Send>, RemoteError> {
    let init: T::Init = decode(init)?;
    let obj = run(std::any::type_name::<T>(), || T::create(init))?;
    Ok(Box::new(obj))
}

/// The constructor offset for a custom type.
pub(crate) fn create_fn<T: SharedObject>() -> i64 {
    let f: CreateFn = create::<T>;
    identity::offset_of(f as usize)
}

/// Builds the custom object a client named, if the client is this build.
pub(crate) fn run_create(
    same_build: Option<SameBuild>,
    ctor: i64,
    init: &[u8],
) -> Result<Box<dyn Any + Send>, RemoteError> {
    let proof = same_build.ok_or(RemoteError::DifferentBuild)?;
    // As in `run_modify`, for a `CreateFn` made by `create_fn`.
    let ctor = proof.function_at::<CreateFn>(ctor);
    ctor(init)
}

fn call<T, F, A, R>(
    proof: SameBuild,
    obj: &mut (dyn Any + Send),
    method: i64,
    arg: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RemoteError>
where
    T: SharedObject,
    F: Fn(&mut T, A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let found = std::any::type_name::<T>();
    let obj = obj.downcast_mut::<T>().ok_or_else(|| RemoteError::Misuse(format!("the object is not a `{found}`")))?;
    // As in `modify_option`, for `encode_fn::<F, fn(&mut T, A) -> R>` in `call_fn`.
    let f: F = proof.decode_fn::<F>(method);
    let arg: A = decode(arg)?;
    let r = run(std::any::type_name::<F>(), || f(obj, arg))?;
    encode(&r, out)
}

/// The offsets for `proxy.call(f, arg)`.
pub(crate) fn call_fn<T, F, A, R>(f: F) -> (i64, i64)
where
    T: SharedObject,
    F: Fn(&mut T, A) -> R + Copy + 'static,
    A: DeserializeOwned + 'static,
    R: Serialize + 'static,
{
    let tramp: CallFn = call::<T, F, A, R>;
    (identity::offset_of(tramp as usize), identity::encode_fn::<F, fn(&mut T, A) -> R>(f))
}

/// Calls the method a client named on a custom object, if the client is this build.
pub(crate) fn run_call(
    same_build: Option<SameBuild>,
    tramp: i64,
    method: i64,
    obj: &mut (dyn Any + Send),
    arg: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RemoteError> {
    let proof = same_build.ok_or(RemoteError::DifferentBuild)?;
    // As in `run_modify`, for a `CallFn` made by `call_fn`.
    let tramp = proof.function_at::<CallFn>(tramp);
    tramp(proof, obj, method, arg, out)
}

/// Runs the drop of a custom object, keeping a panic inside it.
pub(crate) fn drop_quietly(obj: Box<dyn Any + Send>) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(obj)));
}
