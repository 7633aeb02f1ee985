//! Ordered map and set on a sorted `Vec`, for the daemon's small tables
//! (devices, subscriptions, DNS links: at most a few thousand entries, see
//! src/limits.rs).
//!
//! Why not `BTreeMap`: std's B-tree is instantiated anew for every key and
//! value type (node merging, stealing, leaf removal), 3–7 KiB of code per
//! map type; a sorted vector needs a binary search and a memmove. The API is
//! the subset of `BTreeMap`'s the daemon uses, with the same meaning
//! (iteration in key order, `insert` replacing the value), so a map can move
//! between the two by its type alone.

use std::borrow::Borrow;

/// A map ordered by key, stored as sorted `(key, value)` pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecMap<K, V> {
    items: Vec<(K, V)>,
}

/// A set ordered by value.
pub type VecSet<K> = VecMap<K, ()>;

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap { items: Vec::new() }
    }
}

impl<K, V> VecMap<K, V> {
    pub const fn new() -> Self {
        VecMap { items: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn clear(&mut self) {
        self.items.clear()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.items.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.items.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.items.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.items.iter_mut().map(|(_, v)| v)
    }

    /// Keeps the entries for which `keep` returns true, in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.items.retain_mut(|(k, v)| keep(k, v))
    }
}

impl<K: Ord, V> VecMap<K, V> {
    fn find<Q: Ord + ?Sized>(&self, k: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.items.binary_search_by(|(x, _)| x.borrow().cmp(k))
    }

    pub fn get<Q: Ord + ?Sized>(&self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| &self.items[i].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| &mut self.items[i].1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(k).is_ok()
    }

    /// Inserts or replaces; returns the value replaced (the key kept is the
    /// first one, as `BTreeMap` keeps it).
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.find(&k) {
            Ok(i) => Some(std::mem::replace(&mut self.items[i].1, v)),
            Err(i) => {
                self.items.insert(i, (k, v));
                None
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(k).ok().map(|i| self.items.remove(i).1)
    }

    /// The value for `k`, inserted by `make` first if there is none
    /// (`BTreeMap::entry(k).or_insert_with(make)`).
    pub fn get_or_insert_with(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(&k) {
            Ok(i) => i,
            Err(i) => {
                self.items.insert(i, (k, make()));
                i
            }
        };
        &mut self.items[i].1
    }
}

impl<K: Ord> VecMap<K, ()> {
    /// Set insertion: true if `k` was not there yet.
    pub fn add(&mut self, k: K) -> bool {
        self.insert(k, ()).is_none()
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for VecMap<K, V> {
    /// As `BTreeMap`: of equal keys, the last value wins. One insertion
    /// after the other (quadratic, but the tables are small), which needs
    /// no sort code of its own for each map type.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = VecMap::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl<K: Ord> FromIterator<K> for VecMap<K, ()> {
    fn from_iter<I: IntoIterator<Item = K>>(iter: I) -> Self {
        iter.into_iter().map(|k| (k, ())).collect()
    }
}

impl<K, V> IntoIterator for VecMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The same operations on a `BTreeMap` and a `VecMap` give the same
    /// contents in the same order.
    #[test]
    fn behaves_as_btreemap() {
        let mut b: BTreeMap<String, u32> = BTreeMap::new();
        let mut v: VecMap<String, u32> = VecMap::new();
        let mut x: u32 = 12345;
        for step in 0..2000u32 {
            x = x.wrapping_mul(1103515245).wrapping_add(12345);
            let k = format!("k{}", (x >> 8) % 97);
            match (x >> 4) % 5 {
                0 | 1 => assert_eq!(b.insert(k.clone(), step), v.insert(k, step)),
                2 => assert_eq!(b.remove(k.as_str()), v.remove(k.as_str())),
                3 => assert_eq!(b.get(k.as_str()), v.get(k.as_str())),
                _ => {
                    b.retain(|_, n| *n % 3 != 0);
                    v.retain(|_, n| *n % 3 != 0);
                }
            }
            assert_eq!(b.len(), v.len());
        }
        assert!(b.iter().eq(v.iter()));
        assert!(b.keys().eq(v.keys()) && b.values().eq(v.values()));
    }

    #[test]
    fn collect_keeps_the_last_of_equal_keys() {
        let v: VecMap<u32, &str> = [(2, "a"), (1, "b"), (2, "c"), (0, "d"), (1, "e")].into_iter().collect();
        let b: BTreeMap<u32, &str> = [(2, "a"), (1, "b"), (2, "c"), (0, "d"), (1, "e")].into_iter().collect();
        assert!(v.iter().eq(b.iter()));
        assert_eq!(v.into_iter().collect::<Vec<_>>(), vec![(0, "d"), (1, "e"), (2, "c")]);
    }

    #[test]
    fn insert_keeps_the_first_key_and_entry_inserts_once() {
        let mut v: VecMap<u32, Vec<u32>> = VecMap::new();
        v.get_or_insert_with(3, Vec::new).push(1);
        v.get_or_insert_with(3, || vec![9]).push(2);
        assert_eq!(v.get(&3), Some(&vec![1, 2]));
        let mut s: VecSet<&str> = VecSet::new();
        assert!(s.add("b") && s.add("a") && !s.add("b"));
        assert!(s.contains_key("a") && !s.contains_key("c"));
        assert_eq!(s.keys().copied().collect::<Vec<_>>(), ["a", "b"]);
    }
}
