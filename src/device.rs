//! One virtual interface: who owns it, what the client asked for, and the
//! kernel state we made for it (through the journal).

use std::os::fd::OwnedFd;

use crate::apply::{self, Applying, Kernel, Undoing};
use crate::error::{Error, Result};
use crate::journal::{Entry, Journal, Undo};
use crate::plan::{self, Host, Notice};
use crate::settings::Settings;
use crate::shared::Holder;

/// The link an Establish configures.
struct NewLink {
    /// The previous tun's journal entries, newest first: undone once the
    /// new configuration is in.
    old_links: Vec<Entry>,
    /// The tun fd for the client (none for DCO).
    fd: Option<OwnedFd>,
    ifindex: u32,
    name: String,
}

/// The `layer` property: tap (2) or tun (3).
fn is_tap(layer: u32) -> Result<bool> {
    match layer {
        3 => Ok(false),
        2 => Ok(true),
        0 => Err(Error::State("layer is not set: set the 'layer' property to 3 (tun) or 2 (tap) first".into())),
        l => Err(Error::State(format!("layer {l} is not supported (3 = tun, 2 = tap)"))),
    }
}

pub struct Device {
    pub path: String,
    pub owner_uid: u32,
    pub owner_pid: u32,
    /// Unique bus name of the creator: its disappearance cleans up.
    pub owner_bus: String,
    pub acl: Vec<u32>,
    pub log_level: u32,
    /// The `device_name` property: the client's name until Establish,
    /// then the kernel's.
    pub name: String,
    pub settings: Settings,
    pub active: bool,
    pub modified: bool,
    /// The link we configure: (ifindex, kernel name).
    pub link: Option<(u32, String)>,
    pub journal: Journal,
    /// What the current configuration announced (and announces again,
    /// as removed, when it is torn down).
    pub announced: Option<crate::plan::Announce>,
    /// Creation order (global DNS lists are oldest first).
    pub created: u64,
    /// Data channel offload (EnableDCO): the netdev, peers and pipe.
    pub dco: Option<crate::dco_session::DcoDev>,
}

fn next_serial() -> u64 {
    // A thread-local counter: the daemon has one thread, and 32-bit MIPS
    // and PowerPC have no AtomicU64.
    thread_local!(static N: std::cell::Cell<u64> = const { std::cell::Cell::new(1) });
    N.with(|n| n.replace(n.get() + 1))
}

impl Device {
    pub fn new(path: String, name: String, uid: u32, pid: u32, bus: String, log_level: u32) -> Self {
        Device {
            path,
            owner_uid: uid,
            owner_pid: pid,
            owner_bus: bus,
            acl: Vec::new(),
            log_level,
            name,
            settings: Settings::default(),
            active: false,
            modified: false,
            link: None,
            journal: Journal::default(),
            announced: None,
            created: next_serial(),
            dco: None,
        }
    }

    /// Owner, ACL members and root may drive the device.
    pub fn may(&self, uid: u32) -> bool {
        uid == 0 || uid == self.owner_uid || self.acl.contains(&uid)
    }

    /// Before a second Establish: the old configuration goes first (its
    /// routes would collide with the new ones), the old link once the new
    /// one works. `teardown_finish` completes it.
    pub fn establish_teardown(&mut self, k: &mut Kernel) -> Option<Undoing> {
        (self.active || !self.journal.is_empty()).then(|| self.teardown_start(k, false))
    }

    /// Creates the tun/tap device (a DCO device configures the netdev
    /// EnableDCO made) and reads the route table as it is: exclude routes
    /// follow it, and a network it already routes elsewhere fails
    /// Establish before anything is sent. Then `establish_plan`.
    pub fn establish_start(&mut self, k: &mut Kernel) -> Result<Linked> {
        let tap = is_tap(self.settings.layer)?;
        let mut journal = Journal::default();
        let NewLink { old_links, fd, ifindex, name } = self.new_link(k, tap, &mut journal)?;
        match apply::host_routes(&mut k.rtnl) {
            Ok(routes) => Ok(Linked { journal, old_links, fd, ifindex, name, routes }),
            Err(e) => Err(self.establish_failed(k, journal, old_links, e)),
        }
    }

    /// Plans the configuration of the new link; its changes then go to the
    /// kernel a batch at a time, and `establish_commit` keeps them. On
    /// error nothing of this attempt is left in the kernel.
    pub fn establish_plan(
        &mut self,
        k: &mut Kernel,
        l: Linked,
        ignore: &[u32],
        redirect: bool,
    ) -> Result<Establishing> {
        let Linked { journal, old_links, fd, ifindex, name, routes } = l;
        let mut ignore = ignore.to_vec();
        ignore.push(ifindex);
        let mut plan = plan::plan(&self.settings, ifindex, &Host { routes: &routes, ignore: &ignore, redirect });
        let changes = std::mem::take(&mut plan.changes);
        match apply::start(k, changes, self.holder(), routes) {
            Ok(applying) => Ok(Establishing { applying, journal, old_links, fd, ifindex, name, plan }),
            Err(e) => Err(self.establish_failed(k, journal, old_links, e)),
        }
    }

    /// Keeps the configuration the kernel made (or undoes this attempt);
    /// returns the tun fd for the client and the events to announce.
    pub fn establish_commit(
        &mut self,
        k: &mut Kernel,
        e: Establishing,
    ) -> Result<(Option<OwnedFd>, Vec<Notice>, Vec<String>)> {
        let Establishing { applying, mut journal, old_links, fd, ifindex, name, plan } = e;
        if let Err(e) = applying.finish(k, &mut journal) {
            return Err(self.establish_failed(k, journal, old_links, e));
        }
        for f in apply::undo(k, old_links) {
            log::warn!("{}: removing the previous device: {f}", self.path);
        }
        // Oldest first, after what the journal already holds (a DCO netdev).
        for e in journal.take_all().into_iter().rev() {
            self.journal.push(e);
        }
        self.link = Some((ifindex, name.clone()));
        self.name = name;
        self.active = true;
        self.announced = Some(plan.announce.clone());
        Ok((fd, vec![Notice::Added(plan.announce)], plan.notes))
    }

    /// Undoes a failed attempt and puts the old links back.
    fn establish_failed(&mut self, k: &mut Kernel, mut journal: Journal, old_links: Vec<Entry>, e: Error) -> Error {
        // A route conflict is the host admin's business too, not only the client's.
        log::warn!("{}: Establish failed, nothing kept: {e}", self.path);
        apply::undo(k, journal.take_all());
        self.restore(old_links);
        e
    }

    /// The link to configure: a new tun/tap, whose undo goes to `journal`,
    /// or the DCO netdev, which stays (its DelLink remains in
    /// `self.journal`). On error the old links are back in `self.journal`.
    fn new_link(&mut self, k: &mut Kernel, tap: bool, journal: &mut Journal) -> Result<NewLink> {
        if let Some(x) = &self.dco {
            return Ok(NewLink { old_links: Vec::new(), fd: None, ifindex: x.ifindex, name: x.name.clone() });
        }
        let old_links = self.journal.take_all();
        let (fd, kname) = match crate::sys::tun_open(tap, "") {
            Ok(x) => x,
            Err(e) => {
                self.restore(old_links);
                return Err(Error::io("open /dev/net/tun", e));
            }
        };
        let Some(ifindex) = crate::netlink::link::index_of(&kname) else {
            self.restore(old_links);
            return Err(Error::Failed(format!("new device {kname} vanished")));
        };
        // On error the fd closes here, and the kernel removes the tun with it.
        let marked = k.rtnl.request(crate::netlink::link::mark(ifindex));
        if let Err(e) = marked.and_then(|_| apply::record(k, journal, Undo::DelLink { ifindex, name: kname.clone() })) {
            self.restore(old_links);
            return Err(e);
        }
        Ok(NewLink { old_links, fd: Some(fd), ifindex, name: kname })
    }

    /// Puts back journal entries taken out for an attempt that failed.
    fn restore(&mut self, newest_first: Vec<crate::journal::Entry>) {
        for u in newest_first.into_iter().rev() {
            self.journal.push(u);
        }
    }

    /// What holds this device's shared routes (its exclude routes).
    fn holder(&self) -> Holder {
        Holder::Config(self.path.clone())
    }

    /// Undoes the configuration (and with `links`, the devices too).
    /// Returns the removal notice if a configuration was active.
    pub fn teardown(&mut self, k: &mut Kernel, links: bool) -> Vec<Notice> {
        let mut u = self.teardown_start(k, links);
        u.run(k);
        let failed = u.finish(k);
        self.teardown_finish(failed, links)
    }

    /// The undo of the configuration (with `links`, of the devices too)
    /// and of the shared routes only this device held.
    pub fn teardown_start(&mut self, k: &mut Kernel, links: bool) -> Undoing {
        let mut steps = if links { self.journal.take_all() } else { self.journal.take_config() };
        steps.extend(k.shared.release(&self.holder()));
        apply::undo_start(steps)
    }

    /// After the teardown's undo: logs what `failed`; returns the removal
    /// notice if a configuration was active.
    pub fn teardown_finish(&mut self, failed: Vec<String>, links: bool) -> Vec<Notice> {
        for f in failed {
            log::warn!("{}: cleanup: {f}", self.path);
        }
        let was_active = std::mem::replace(&mut self.active, false);
        if links {
            self.link = None;
        }
        match self.announced.take() {
            Some(a) if was_active => vec![Notice::Removed(a)],
            _ => Vec::new(),
        }
    }
}

/// An Establish with its link made and the route table read.
pub struct Linked {
    journal: Journal,
    old_links: Vec<Entry>,
    fd: Option<OwnedFd>,
    ifindex: u32,
    name: String,
    routes: Vec<crate::netlink::route::KernelRoute>,
}

/// An Establish on its way: the link made, the plan's changes going to the
/// kernel (`applying`, a batch per loop turn), then `establish_commit`.
pub struct Establishing {
    pub applying: Applying,
    journal: Journal,
    old_links: Vec<Entry>,
    fd: Option<OwnedFd>,
    ifindex: u32,
    name: String,
    plan: plan::Plan,
}
