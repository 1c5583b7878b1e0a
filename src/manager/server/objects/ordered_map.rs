//! A map of encoded keys to encoded values that remembers insertion order, as a Python
//! dict does (`items()` lists keys in the order they were first inserted).

use std::collections::HashMap;

/// Slots in insertion order (removed ones are `None`) and an index from key to slot.
#[derive(Debug, Default)]
pub(crate) struct OrderedMap {
    index: HashMap<Box<[u8]>, usize>,
    slots: Vec<Option<Slot>>,
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
        None
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let i = self.index.remove(key)?;
        let (_, v) = self.slots[i].take().expect("indexed slots are live");
        if self.slots.len() > 32 && self.index.len() < self.slots.len() / 2 {
            self.compact();
        }
        Some(v)
    }

    pub(crate) fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
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
}
