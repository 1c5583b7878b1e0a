//! Shared memory: `Value`/`Array` (plain-old-data with an attached lock), their raw
//! variants, and named `SharedMemory` segments.

mod array;
mod memory;
mod value;

pub use array::{Array, ArrayGuard, RawArray};
pub use memory::SharedMemory;
pub use value::{RawValue, Value, ValueGuard};

/// Where the data of a `Value`/`Array` of `T` starts in its region.
pub(crate) fn data_at<T>() -> usize {
    128usize.next_multiple_of(align_of::<T>())
}
