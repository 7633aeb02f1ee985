//! The undo journal: every kernel change we make is recorded with its
//! inverse, so Disable, Destroy, client death and shutdown undo exactly
//! what was done, in reverse order, and nothing else.

use crate::netlink::addr::Addr;
use crate::netlink::route::Route;
use crate::netlink::{self, Req};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    DelRoute(Route),
    DelAddr(Addr),
    /// Set the link down again (configuration of a link we keep).
    LinkDown {
        ifindex: u32,
    },
    /// Delete a link we created; `name` guards against ifindex reuse.
    DelLink {
        ifindex: u32,
        name: String,
    },
}

impl Undo {
    /// The netlink request that performs this undo step.
    pub fn request(&self) -> Req {
        match self {
            Undo::DelRoute(r) => netlink::route::del(r),
            Undo::DelAddr(a) => netlink::addr::del(a),
            Undo::LinkDown { ifindex } => {
                let mut r = netlink::link::set(*ifindex, None, None, false);
                r.ok_errnos = netlink::OK_DEL;
                r
            }
            Undo::DelLink { ifindex, .. } => netlink::link::del(*ifindex),
        }
    }

    pub fn is_link(&self) -> bool {
        matches!(self, Undo::DelLink { .. })
    }
}

#[derive(Debug, Default, Clone)]
pub struct Journal {
    entries: Vec<Undo>,
}

impl Journal {
    pub fn push(&mut self, u: Undo) {
        self.entries.push(u);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn entries(&self) -> &[Undo] {
        &self.entries
    }

    /// Removes and returns every entry, newest first.
    pub fn take_all(&mut self) -> Vec<Undo> {
        let mut v = std::mem::take(&mut self.entries);
        v.reverse();
        v
    }

    /// Removes and returns the configuration entries (not link deletions),
    /// newest first; links stay recorded for a later Destroy.
    pub fn take_config(&mut self) -> Vec<Undo> {
        let (links, mut cfg): (Vec<Undo>, Vec<Undo>) =
            std::mem::take(&mut self.entries).into_iter().partition(|u| u.is_link());
        self.entries = links;
        cfg.reverse();
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_undo_keeps_links_and_reverses() {
        let mut j = Journal::default();
        j.push(Undo::DelLink { ifindex: 5, name: "tun0".into() });
        j.push(Undo::LinkDown { ifindex: 5 });
        j.push(Undo::DelAddr(Addr { ifindex: 5, addr: "10.0.0.2".parse().unwrap(), prefix: 24 }));
        let c = j.take_config();
        assert!(matches!(c[0], Undo::DelAddr(_)));
        assert_eq!(c[1], Undo::LinkDown { ifindex: 5 });
        assert_eq!(j.len(), 1);
        assert!(j.take_all()[0].is_link());
        assert!(j.is_empty());
    }
}
