//! A map of encoded keys to encoded values that remembers insertion order, as a Python
//! dict does (`items()` lists keys in the order they were first inserted).

use std::collections::HashMap;

/// Slots in insertion order (removed ones are `None`) and an index from key to slot.
#[derive(Debug, Default)]
pub(crate) struct OrderedMap {
    index: HashMap<Box<[u8]>, usize>,
    slots: Vec<Option<Slot>>,
    /// Counts the changes of the set of keys (insertions of new keys, removals): a live
    /// iterator that saw another version must stop, as Python's does.
    version: u64,
}

/// An encoded key and its encoded value.
type Slot = (Box<[u8]>, Vec<u8>);

impl OrderedMap {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let &i = self.index.get(key)?;
        self.slots[i].as_ref().map(|(_, v)| v.as_slice())
    }

    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.index.contains_key(key)
    }

    /// Inserts or replaces; a replaced key keeps its place. Returns the old value.
    pub(crate) fn insert(&mut self, key: &[u8], value: Vec<u8>) -> Option<Vec<u8>> {
        if let Some(&i) = self.index.get(key) {
            let slot = self.slots[i].as_mut().expect("indexed slots are live");
            return Some(std::mem::replace(&mut slot.1, value));
        }
        self.index.insert(key.into(), self.slots.len());
        self.slots.push(Some((key.into(), value)));
        self.version += 1;
        None
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let i = self.index.remove(key)?;
        let (_, v) = self.slots[i].take().expect("indexed slots are live");
        self.version += 1;
        if self.slots.len() > 32 && self.index.len() < self.slots.len() / 2 {
            self.compact();
        }
        Some(v)
    }

    pub(crate) fn clear(&mut self) {
        if !self.index.is_empty() {
            self.version += 1;
        }
        self.index.clear();
        self.slots.clear();
    }

    /// The version of the set of keys (see [`OrderedMap::keys_from`]).
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// At most `max` keys from insertion position `from` on, the position after them,
    /// and whether that is the end. Positions stay valid while the version does (slots
    /// are compacted only by a removal, which changes it).
    pub(crate) fn keys_from(&self, from: usize, max: usize) -> (Vec<&[u8]>, usize, bool) {
        let mut keys = Vec::new();
        let mut at = from.min(self.slots.len());
        while at < self.slots.len() && keys.len() < max {
            if let Some((k, _)) = &self.slots[at] {
                keys.push(&k[..]);
            }
            at += 1;
        }
        (keys, at, at == self.slots.len())
    }

    /// Live entries in insertion order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.slots.iter().flatten().map(|(k, v)| (&k[..], &v[..]))
    }

    fn compact(&mut self) {
        self.slots.retain(Option::is_some);
        for (i, slot) in self.slots.iter().enumerate() {
            let (k, _) = slot.as_ref().expect("retained slots are live");
            *self.index.get_mut(k).expect("live keys are indexed") = i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_insertion_order_and_survives_removals() {
        let mut m = OrderedMap::default();
        for i in 0..100u8 {
            m.insert(&[i], vec![i]);
        }
        for i in (0..100u8).filter(|i| i % 3 != 0) {
            assert_eq!(m.remove(&[i]), Some(vec![i]));
        }
        assert_eq!(m.insert(&[3], vec![33]), Some(vec![3]));
        m.insert(&[200], vec![200]);
        let keys: Vec<u8> = m.iter().map(|(k, _)| k[0]).collect();
        let mut expected: Vec<u8> = (0..100u8).filter(|i| i % 3 == 0).collect();
        expected.push(200);
        assert_eq!(keys, expected);
        assert_eq!(m.get(&[3]), Some(&[33][..]));
        assert_eq!(m.len(), expected.len());
        assert!(!m.contains(&[1]));
    }

    #[test]
    fn keys_from_walks_positions_and_the_version_counts_key_changes() {
        let mut m = OrderedMap::default();
        for i in 0..5u8 {
            m.insert(&[i], vec![i]);
        }
        let v = m.version();
        m.insert(&[1], vec![9]);
        assert_eq!(m.version(), v, "a replaced value is no change of keys");
        let (keys, next, end) = m.keys_from(0, 2);
        assert_eq!((keys, next, end), (vec![&[0u8][..], &[1]], 2, false));
        let (keys, next, end) = m.keys_from(next, 10);
        assert_eq!((keys.len(), next, end), (3, 5, true));
        assert_eq!(m.keys_from(99, 1), (vec![], 5, true));
        m.remove(&[4]);
        assert_ne!(m.version(), v);
    }
}
