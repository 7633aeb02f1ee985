//! Routes outside our devices that several holders may need at once: the
//! exclude routes of different sessions, the protections of one server.
//! The kernel has one route; we record its undo once, and it goes when the
//! last holder lets go. A route that was there before anyone here asked
//! (someone else's) is never recorded, so never removed.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::journal::Entry;
use crate::netlink::route::Route;

/// Who a ProtectSocket protection belongs to: a device, or (for `/`) the
/// calling client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    Device(String),
    Client { bus: String, pid: u32 },
}

/// Who needs a shared route.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Holder {
    /// The configuration of the device at this path (its exclude routes).
    Config(String),
    /// A ProtectSocket protection: its owner and the server it protects.
    Protection(Owner, IpAddr),
}

struct Held {
    entry: Entry,
    holders: Vec<Holder>,
}

#[derive(Default)]
pub struct Shared {
    routes: HashMap<Route, Held>,
    by_holder: HashMap<Holder, Vec<Route>>,
}

impl Shared {
    /// Whether `r` is a route we made and still hold for someone.
    pub fn contains(&self, r: &Route) -> bool {
        self.routes.contains_key(r)
    }

    /// Records a route `h` just made, with its undo entry.
    pub fn insert(&mut self, r: Route, entry: Entry, h: &Holder) {
        self.by_holder.entry(h.clone()).or_default().push(r.clone());
        self.routes.insert(r, Held { entry, holders: vec![h.clone()] });
    }

    /// Adds `h` to the holders of a route we already have.
    pub fn hold(&mut self, r: &Route, h: &Holder) {
        let Some(held) = self.routes.get_mut(r) else { return };
        if !held.holders.contains(h) {
            held.holders.push(h.clone());
            self.by_holder.entry(h.clone()).or_default().push(r.clone());
        }
    }

    /// Lets go of everything `h` holds; returns the undo entries of the
    /// routes nobody holds any more, newest first.
    pub fn release(&mut self, h: &Holder) -> Vec<Entry> {
        let mut last = Vec::new();
        for r in self.by_holder.remove(h).unwrap_or_default() {
            let Some(held) = self.routes.get_mut(&r) else { continue };
            held.holders.retain(|x| x != h);
            if held.holders.is_empty() {
                last.extend(self.routes.remove(&r).map(|held| held.entry));
            }
        }
        last.sort_by_key(|e| std::cmp::Reverse(e.id));
        last
    }

    /// How many hold `r` (0: not one of ours).
    #[cfg(test)]
    pub fn holders(&self, r: &Route) -> usize {
        self.routes.get(r).map_or(0, |h| h.holders.len())
    }

    /// Every route held, with its holders.
    pub fn held(&self) -> impl Iterator<Item = (&Route, &[Holder])> {
        self.routes.iter().map(|(r, h)| (r, h.holders.as_slice()))
    }

    /// Puts `new` in the place of `old` (a route that moved to another
    /// path), for the same holders; returns `old`'s undo entry.
    pub fn replace(&mut self, old: &Route, new: Route, entry: Entry) -> Option<Entry> {
        let held = self.routes.remove(old)?;
        for h in &held.holders {
            for r in self.by_holder.get_mut(h).into_iter().flatten().filter(|r| *r == old) {
                *r = new.clone();
            }
        }
        self.routes.insert(new, Held { entry, holders: held.holders });
        Some(held.entry)
    }

    /// Forgets a route that is no longer ours (gone, and its place taken by
    /// someone else's); returns its undo entry.
    pub fn forget(&mut self, r: &Route) -> Option<Entry> {
        let held = self.routes.remove(r)?;
        for h in &held.holders {
            if let Some(v) = self.by_holder.get_mut(h) {
                v.retain(|x| x != r);
            }
        }
        Some(held.entry)
    }

    /// Every live undo entry (for rewriting the journal file).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.routes.values().map(|h| &h.entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Undo;

    fn route(dst: &str) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            gateway: Some("192.0.2.1".parse().unwrap()),
            oif: 2,
            metric: None,
            table: 254,
            protocol: 79,
            onlink: false,
        }
    }

    #[test]
    fn a_route_goes_with_its_last_holder_only() {
        let mut s = Shared::default();
        let (a, b) = (Holder::Config("/a".into()), Holder::Config("/b".into()));
        let (x, y) = (route("198.51.100.0/24"), route("203.0.113.0/24"));
        s.insert(x.clone(), Entry { id: 1, undo: Undo::DelRoute(x.clone()) }, &a);
        s.insert(y.clone(), Entry { id: 2, undo: Undo::DelRoute(y.clone()) }, &a);
        s.hold(&x, &b);
        s.hold(&x, &b); // twice by one holder still counts once
        assert_eq!(s.holders(&x), 2);
        let gone: Vec<u64> = s.release(&a).iter().map(|e| e.id).collect();
        assert_eq!(gone, [2], "x is still held by b");
        assert!(s.contains(&x) && !s.contains(&y));
        assert_eq!(s.release(&b).len(), 1);
        assert!(s.release(&b).is_empty());
        assert_eq!(s.entries().count(), 0);
    }

    #[test]
    fn a_moved_route_keeps_its_holders() {
        let mut s = Shared::default();
        let (a, b) = (Holder::Config("/a".into()), Holder::Config("/b".into()));
        let x = route("198.51.100.0/24");
        let y = Route { gateway: Some("192.0.2.254".parse().unwrap()), ..x.clone() };
        s.insert(x.clone(), Entry { id: 1, undo: Undo::DelRoute(x.clone()) }, &a);
        s.hold(&x, &b);
        let old = s.replace(&x, y.clone(), Entry { id: 2, undo: Undo::DelRoute(y.clone()) });
        assert_eq!(old.map(|e| e.id), Some(1));
        assert!(!s.contains(&x) && s.holders(&y) == 2);
        assert!(s.release(&a).is_empty(), "b still holds the moved route");
        assert_eq!(s.release(&b).iter().map(|e| e.id).collect::<Vec<_>>(), [2]);
        s.insert(x.clone(), Entry { id: 3, undo: Undo::DelRoute(x.clone()) }, &a);
        assert_eq!(s.forget(&x).map(|e| e.id), Some(3));
        assert!(s.release(&a).is_empty() && s.entries().count() == 0);
    }
}
