//! `ShareableList`: a fixed-length list of scalars, strings and byte strings in one named
//! shared-memory segment, like Python's `multiprocessing.shared_memory.ShareableList`.
//!
//! The segment's layout (all little-endian, every offset a multiple of 8):
//!
//! | at | what |
//! |---|---|
//! | 0 | magic `MPSHLST1` |
//! | 8 | the number of items `n` (u64) |
//! | 16 + 24·i | item `i`'s slot: data offset (u64), capacity in bytes (u32), kind (u32), length (u32), unused (u32) |
//! | after the slots | each item's data, `capacity` bytes, at its offset |
//!
//! Offsets and capacities are fixed when the list is made and checked once when a
//! process attaches it; kind and length change with each `set` and are checked on each
//! read, so bytes another process scribbled over are an error, never a crash.

use std::fmt;
use std::io;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::SharedMemory;

const MAGIC: u64 = u64::from_le_bytes(*b"MPSHLST1");
const SLOTS_AT: usize = 16;
const SLOT: usize = 24;
/// The capacity of a slot for a number, a bool or nothing; strings get their length
/// rounded up to a multiple of this.
const WORD: usize = 8;

/// One item of a [`ShareableList`]: what Python's `ShareableList` holds (`int` as a
/// 64-bit integer, `float`, `bool`, `str`, `bytes`, `None`).
///
/// `From` conversions make lists easy to write: `ShareableList::create([1.into(),
/// "one".into(), ShareableItem::None])`, or from one type: `ShareableList::create([1, 2])`.
///
/// ```
/// use multiproc::ShareableItem;
///
/// assert_eq!(ShareableItem::from("hi"), ShareableItem::Str("hi".into()));
/// assert_eq!(ShareableItem::from(None::<i64>), ShareableItem::None);
/// assert_eq!(ShareableItem::from(2.5).format(), "d");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum ShareableItem {
    /// Python's `None`.
    None,
    /// An integer (Python's `int`, limited to 64 bits as its `ShareableList` is).
    Int(i64),
    /// A float.
    Float(f64),
    /// A bool.
    Bool(bool),
    /// A UTF-8 string.
    Str(String),
    /// A byte string.
    Bytes(Vec<u8>),
}

impl ShareableItem {
    fn kind(&self) -> u32 {
        match self {
            ShareableItem::None => 0,
            ShareableItem::Int(_) => 1,
            ShareableItem::Float(_) => 2,
            ShareableItem::Bool(_) => 3,
            ShareableItem::Str(_) => 4,
            ShareableItem::Bytes(_) => 5,
        }
    }

    /// The bytes stored for the item.
    fn encode(&self) -> Vec<u8> {
        match self {
            ShareableItem::None => Vec::new(),
            ShareableItem::Int(i) => i.to_le_bytes().to_vec(),
            ShareableItem::Float(f) => f.to_le_bytes().to_vec(),
            ShareableItem::Bool(b) => vec![u8::from(*b)],
            ShareableItem::Str(s) => s.as_bytes().to_vec(),
            ShareableItem::Bytes(b) => b.clone(),
        }
    }

    fn decode(kind: u32, bytes: Vec<u8>) -> Result<ShareableItem, String> {
        let word = |b: &[u8]| <[u8; 8]>::try_from(b).map_err(|_| format!("a number stored in {} bytes", b.len()));
        Ok(match kind {
            0 => ShareableItem::None,
            1 => ShareableItem::Int(i64::from_le_bytes(word(&bytes)?)),
            2 => ShareableItem::Float(f64::from_le_bytes(word(&bytes)?)),
            3 => match bytes[..] {
                [b] => ShareableItem::Bool(b != 0),
                _ => return Err(format!("a bool stored in {} bytes", bytes.len())),
            },
            4 => ShareableItem::Str(String::from_utf8(bytes).map_err(|_| "a string that is not UTF-8".to_string())?),
            5 => ShareableItem::Bytes(bytes),
            _ => return Err(format!("an item of unknown kind {kind} (length {})", bytes.len())),
        })
    }

    /// Its format in Python's `struct` notation, as Python's `ShareableList.format`
    /// lists them: `q` an integer, `d` a float, `?` a bool, `x` nothing, `<N>s` a string
    /// or byte string of up to `N` bytes (here the length stored, not the slot's room).
    pub fn format(&self) -> String {
        match self {
            ShareableItem::None => "x".into(),
            ShareableItem::Int(_) => "q".into(),
            ShareableItem::Float(_) => "d".into(),
            ShareableItem::Bool(_) => "?".into(),
            ShareableItem::Str(s) => format!("{}s", s.len()),
            ShareableItem::Bytes(b) => format!("{}s", b.len()),
        }
    }

    /// The room a slot made for this item gets: a word for a scalar, the length rounded
    /// up to a word (at least one) for a string.
    fn room(&self) -> usize {
        match self {
            ShareableItem::Str(s) => s.len().max(1).next_multiple_of(WORD),
            ShareableItem::Bytes(b) => b.len().max(1).next_multiple_of(WORD),
            _ => WORD,
        }
    }
}

macro_rules! item_from {
    ($($t:ty => $v:ident($conv:expr)),* $(,)?) => { $(
        impl From<$t> for ShareableItem {
            fn from(x: $t) -> ShareableItem {
                ShareableItem::$v($conv(x))
            }
        }
    )* };
}
item_from!(
    i64 => Int(|x| x), i32 => Int(i64::from), u32 => Int(i64::from), i16 => Int(i64::from), u16 => Int(i64::from),
    i8 => Int(i64::from), u8 => Int(i64::from), f64 => Float(|x| x), f32 => Float(f64::from), bool => Bool(|x| x),
    String => Str(|x| x), &str => Str(str::to_string), Vec<u8> => Bytes(|x| x), &[u8] => Bytes(<[u8]>::to_vec),
);

impl<T: Into<ShareableItem>> From<Option<T>> for ShareableItem {
    fn from(x: Option<T>) -> ShareableItem {
        x.map_or(ShareableItem::None, Into::into)
    }
}

impl From<()> for ShareableItem {
    fn from(_: ()) -> ShareableItem {
        ShareableItem::None
    }
}

/// Where one item lives: fixed for the list's life.
#[derive(Debug, Clone, Copy)]
struct Slot {
    offset: usize,
    capacity: usize,
}

/// A fixed-length list of [`ShareableItem`]s (integers, floats, bools, strings, byte
/// strings, `None`) in one named shared-memory segment, like Python's
/// `multiprocessing.shared_memory.ShareableList`.
///
/// The list's length and each item's room are fixed when it is made: a number, bool or
/// `None` has 8 bytes, a string or byte string its length rounded up to 8. Any item can
/// be replaced by any other that fits its slot — a number by a short string, a string by a
/// shorter one; a value too big for its slot is an error naming the item, its size and
/// the room. Another process attaches the list by [`name`](Self::name), or receives the
/// handle itself (it travels as an argument, its descriptor riding along).
///
/// The segment is a [`SharedMemory`]: the creating handle removes the name when dropped
/// or when its process ends, however it ends (a [`SharedMemoryManager`](crate::SharedMemoryManager)
/// can keep it until its shutdown instead). Items are read and written without a lock:
/// writers that may race, or a reader that must not see an item mid-write, coordinate with
/// a [`Lock`](crate::Lock), as with Python's.
///
/// Differences from Python: integers are 64-bit; a string keeps its trailing NUL bytes
/// (Python strips them); [`count`](Self::count) and [`index`](Self::index) compare items
/// with their type (`1`, `1.0` and `true` are three different items).
///
/// ```
/// use multiproc::{Process, ShareableItem, ShareableList};
///
/// fn shout(name: String) {
///     let mut list = ShareableList::attach(&name).unwrap();
///     let ShareableItem::Str(s) = list.get(1).unwrap() else { panic!("a string") };
///     list.set(1, s.to_uppercase()).unwrap();
///     list.set(0, 43).unwrap();
/// }
///
/// multiproc::init();
/// let list = ShareableList::create([42.into(), "hello".into(), ShareableItem::None, 2.5.into()])?;
/// assert_eq!(list.format()?, "q5sxd");
/// let mut p = Process::new(shout, list.name().to_string());
/// p.start()?;
/// p.join()?;
/// assert_eq!(list.to_vec()?, [43.into(), "HELLO".into(), ShareableItem::None, 2.5.into()]);
/// assert_eq!(list.index(&"HELLO".into())?, Some(1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ShareableList {
    shm: SharedMemory,
    slots: Vec<Slot>,
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_list();
        for i in 0..self.len() {
            match self.get(i) {
                Ok(item) => l.entry(&item),
                Err(e) => l.entry(&format_args!("<{e}>")),
            };
        }
        l.finish()
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn corrupt(name: &str, msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("shared memory `{name}` is not a valid ShareableList: {msg}"))
}

/// The slots for `items`, laid out after the table; and the segment's size.
fn layout(items: &[ShareableItem]) -> io::Result<(Vec<Slot>, usize)> {
    let mut at = (SLOTS_AT + SLOT * items.len()).next_multiple_of(WORD);
    let mut slots = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let capacity = item.room();
        if u32::try_from(capacity).is_err() {
            return Err(invalid(format!("item {i} ({} bytes) is too big for a ShareableList item", capacity)));
        }
        slots.push(Slot { offset: at, capacity });
        at += capacity;
    }
    Ok((slots, at))
}

impl ShareableList {
    /// A new list holding `items`, in a segment with a random name.
    pub fn create<I, T>(items: I) -> io::Result<ShareableList>
    where
        I: IntoIterator<Item = T>,
        T: Into<ShareableItem>,
    {
        Self::make(None, items.into_iter().map(Into::into).collect())
    }

    /// A new list holding `items`, in a segment named `name` (it must not exist).
    pub fn create_named<I, T>(name: &str, items: I) -> io::Result<ShareableList>
    where
        I: IntoIterator<Item = T>,
        T: Into<ShareableItem>,
    {
        Self::make(Some(name), items.into_iter().map(Into::into).collect())
    }

    fn make(name: Option<&str>, items: Vec<ShareableItem>) -> io::Result<ShareableList> {
        let (slots, size) = layout(&items)?;
        let shm = match name {
            Some(name) => SharedMemory::create_named(name, size)?,
            None => SharedMemory::create(size)?,
        };
        Ok(Self::fill(shm, slots, &items))
    }

    /// Writes the header, the slot table and `items` into a fresh segment.
    fn fill(shm: SharedMemory, slots: Vec<Slot>, items: &[ShareableItem]) -> ShareableList {
        let map = shm.map();
        map.write_pod::<u64>(8, items.len() as u64);
        for (i, slot) in slots.iter().enumerate() {
            map.write_pod::<u64>(SLOTS_AT + SLOT * i, slot.offset as u64);
            map.write_pod::<u32>(SLOTS_AT + SLOT * i + 8, slot.capacity as u32);
        }
        let list = ShareableList { shm, slots };
        for (i, item) in items.iter().enumerate() {
            list.store(i, item);
        }
        list.shm.map().write_pod::<u64>(0, MAGIC);
        list
    }

    /// Attaches the existing list in the segment `name`, checking its layout.
    pub fn attach(name: &str) -> io::Result<ShareableList> {
        Self::from_shm(SharedMemory::attach(name)?)
    }

    /// The list in `shm`, after checking its header and every slot.
    fn from_shm(shm: SharedMemory) -> io::Result<ShareableList> {
        let (name, size, map) = (shm.name().to_string(), shm.size(), shm.map());
        if size < SLOTS_AT || map.read_pod::<u64>(0) != MAGIC {
            return Err(corrupt(&name, "it does not start with a ShareableList header".into()));
        }
        let n = map.read_pod::<u64>(8);
        let table_end = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(SLOT))
            .and_then(|t| t.checked_add(SLOTS_AT))
            .filter(|&end| end <= size)
            .ok_or_else(|| corrupt(&name, format!("{n} items do not fit its {size} bytes")))?;
        let mut slots = Vec::with_capacity(n as usize);
        let mut at = table_end.next_multiple_of(WORD);
        for i in 0..n as usize {
            let offset = map.read_pod::<u64>(SLOTS_AT + SLOT * i) as usize;
            let capacity = map.read_pod::<u32>(SLOTS_AT + SLOT * i + 8) as usize;
            let end = offset.checked_add(capacity).filter(|&end| end <= size);
            if offset < at || !offset.is_multiple_of(WORD) || capacity < WORD || end.is_none() {
                return Err(corrupt(&name, format!("item {i} has a bad slot ({capacity} bytes at {offset})")));
            }
            at = end.unwrap_or(size);
            slots.push(Slot { offset, capacity });
        }
        Ok(ShareableList { shm, slots })
    }

    /// The segment's name (what [`attach`](Self::attach) takes).
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// The segment the list lives in.
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// The number of items (fixed).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn slot(&self, index: usize) -> io::Result<Slot> {
        self.slots.get(index).copied().ok_or_else(|| {
            invalid(format!("index {index} is out of range for a ShareableList of {} items", self.slots.len()))
        })
    }

    /// The most bytes the item at `index` may take (a string's or byte string's length).
    pub fn capacity(&self, index: usize) -> io::Result<usize> {
        Ok(self.slot(index)?.capacity)
    }

    /// The item at `index`. An error if `index` is out of range, or if the slot holds
    /// bytes no `set` wrote (another process scribbled over the segment).
    pub fn get(&self, index: usize) -> io::Result<ShareableItem> {
        let slot = self.slot(index)?;
        let map = self.shm.map();
        let at = SLOTS_AT + SLOT * index;
        let (kind, len) = (map.read_pod::<u32>(at + 12), map.read_pod::<u32>(at + 16) as usize);
        if len > slot.capacity {
            return Err(corrupt(
                self.name(),
                format!("item {index} claims {len} bytes in a slot of {}", slot.capacity),
            ));
        }
        let mut bytes = vec![0; len];
        map.read_bytes(slot.offset, &mut bytes);
        ShareableItem::decode(kind, bytes).map_err(|e| corrupt(self.name(), format!("item {index} is {e}")))
    }

    /// Replaces the item at `index` with `value`, which may be of another type if it fits
    /// the slot ([`capacity`](Self::capacity)); if it does not, an error says so and the
    /// item is unchanged.
    pub fn set(&mut self, index: usize, value: impl Into<ShareableItem>) -> io::Result<()> {
        let slot = self.slot(index)?;
        let value = value.into();
        let need = value.encode().len();
        if need > slot.capacity {
            return Err(invalid(format!(
                "item {index} of ShareableList `{}` has room for {} bytes; the {} given needs {need}",
                self.name(),
                slot.capacity,
                value.format()
            )));
        }
        self.store(index, &value);
        Ok(())
    }

    /// Writes `value` (known to fit) into slot `index`: data, then length, then kind.
    fn store(&self, index: usize, value: &ShareableItem) {
        let (slot, map) = (self.slots[index], self.shm.map());
        let bytes = value.encode();
        map.write_bytes(slot.offset, &bytes);
        let at = SLOTS_AT + SLOT * index;
        map.write_pod::<u32>(at + 16, bytes.len() as u32);
        map.write_pod::<u32>(at + 12, value.kind());
    }

    /// Every item, in order.
    pub fn to_vec(&self) -> io::Result<Vec<ShareableItem>> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }

    /// How many items equal `value` (same type and value).
    pub fn count(&self, value: &ShareableItem) -> io::Result<usize> {
        Ok(self.to_vec()?.iter().filter(|&item| item == value).count())
    }

    /// The index of the first item equal to `value` (same type and value), if any
    /// (Python's `index` raises `ValueError` where this gives `None`).
    pub fn index(&self, value: &ShareableItem) -> io::Result<Option<usize>> {
        Ok(self.to_vec()?.iter().position(|item| item == value))
    }

    /// The items' formats in Python's `struct` notation, one after the other (see
    /// [`ShareableItem::format`]).
    pub fn format(&self) -> io::Result<String> {
        Ok(self.to_vec()?.iter().map(ShareableItem::format).collect())
    }

    /// Removes the segment's name now (see [`SharedMemory::unlink`]).
    pub fn unlink(&self) -> io::Result<()> {
        self.shm.unlink()
    }

    /// Another handle to the same list (not the owner: dropping it unlinks nothing).
    pub fn try_clone(&self) -> io::Result<ShareableList> {
        Ok(ShareableList { shm: self.shm.try_clone()?, slots: self.slots.clone() })
    }

    /// The segment, for a [`SharedMemoryManager`](crate::SharedMemoryManager) taking it over.
    pub(crate) fn shm_mut(&mut self) -> &mut SharedMemory {
        &mut self.shm
    }
}

impl Serialize for ShareableList {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.shm.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let shm = SharedMemory::deserialize(d)?;
        ShareableList::from_shm(shm).map_err(serde::de::Error::custom)
    }
}
