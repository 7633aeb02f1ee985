//! One virtual interface: who owns it, what the client asked for, and the
//! kernel state we made for it (through the journal).

use std::os::fd::OwnedFd;

use crate::apply::{self, Applying, Kernel, Undoing};
use crate::error::{Error, Result};
use crate::journal::{Entry, Journal, Undo};
use crate::netlink;
use crate::plan::{self, Host, Notice};
use crate::settings::Settings;
use crate::shared::Holder;

/// The link an Establish configures.
#[derive(Default)]
struct NewLink {
    /// The undo of what this attempt made (a new tun's removal).
    journal: Journal,
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
        0 => Err(Error::state("layer is not set: set the 'layer' property to 3 (tun) or 2 (tap) first")),
        l => Err(Error::state(format!("layer {l} is not supported (3 = tun, 2 = tap)"))),
    }
}

#[derive(Default)]
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

impl Device {
    pub fn new(path: String, name: String, uid: u32, pid: u32, bus: String, log_level: u32) -> Self {
        // The creation order from a thread-local counter: the daemon has one
        // thread, and 32-bit MIPS and PowerPC have no AtomicU64.
        thread_local!(static N: std::cell::Cell<u64> = const { std::cell::Cell::new(1) });
        let created = N.with(|n| n.replace(n.get() + 1));
        Device { path, owner_uid: uid, owner_pid: pid, owner_bus: bus, log_level, name, created, ..Default::default() }
    }

    /// Owner, ACL members and root may drive the device.
    pub fn may(&self, uid: u32) -> bool {
        uid == 0 || uid == self.owner_uid || self.acl.contains(&uid)
    }

    /// Creates the tun/tap device (a DCO device configures the netdev
    /// EnableDCO made) and reads the route table as it is: exclude routes
    /// follow it, and a network it already routes elsewhere fails
    /// Establish before anything is sent. Then `establish_plan`.
    pub fn establish_start(&mut self, k: &mut Kernel) -> Result<Linked> {
        let tap = is_tap(self.settings.layer)?;
        let link = self.new_link(k, tap)?;
        match apply::host_routes(&mut k.rtnl) {
            Ok(routes) => Ok(Linked { link, routes }),
            Err(e) => Err(self.establish_failed(k, link, e)),
        }
    }

    /// Plans the configuration of the new link; its changes are then
    /// checked and go to the kernel a slice or batch per loop turn
    /// (`Establishing::applying`), and `establish_commit` keeps them.
    pub fn establish_plan(
        &mut self,
        k: &Kernel,
        Linked { link, routes }: Linked,
        ignore: &[u32],
        redirect: bool,
    ) -> Establishing {
        let ignore = [ignore, &[link.ifindex]].concat();
        let mut plan = plan::plan(&self.settings, link.ifindex, &Host { routes: &routes, ignore: &ignore, redirect });
        let changes = std::mem::take(&mut plan.changes);
        Establishing { applying: apply::start(k, changes, self.holder(), routes), link, plan }
    }

    /// Gives up an Establish whose changes were refused before any was
    /// sent: nothing of this attempt is left in the kernel.
    pub fn establish_refused(&mut self, k: &mut Kernel, est: Establishing, e: Error) -> Error {
        self.establish_failed(k, est.link, e)
    }

    /// Keeps the configuration the kernel made (or undoes this attempt).
    pub fn establish_commit(&mut self, k: &mut Kernel, est: Establishing) -> Result<Established> {
        let Establishing { applying, mut link, plan } = est;
        if let Err(e) = applying.finish(k, &mut link.journal) {
            return Err(self.establish_failed(k, link, e));
        }
        // After what the journal already holds (a DCO netdev), in order.
        self.journal.entries.append(&mut link.journal.entries);
        self.link = Some((link.ifindex, link.name.clone()));
        self.name = link.name;
        self.active = true;
        self.announced = Some(plan.announce.clone());
        let events = vec![Notice::Added(plan.announce)];
        Ok(Established { fd: link.fd, events, notes: plan.notes, old_links: link.old_links })
    }

    /// Undoes a failed attempt and puts the old links back.
    fn establish_failed(&mut self, k: &mut Kernel, mut link: NewLink, e: Error) -> Error {
        // A route conflict is the host admin's business too, not only the client's.
        log::warn!("{}: Establish failed, nothing kept: {e}", self.path);
        apply::undo(k, link.journal.take_all());
        self.restore(link.old_links);
        e
    }

    /// The link to configure: a new tun/tap, or the DCO netdev, which
    /// stays (its DelLink remains in `self.journal`). On error the old
    /// links are back in `self.journal`.
    fn new_link(&mut self, k: &mut Kernel, tap: bool) -> Result<NewLink> {
        if let Some(x) = &self.dco {
            return Ok(NewLink { ifindex: x.ifindex, name: x.name.clone(), ..Default::default() });
        }
        let old_links = self.journal.take_all();
        match open_tun(k, tap) {
            Ok(link) => Ok(NewLink { old_links, ..link }),
            Err(e) => {
                self.restore(old_links);
                Err(e)
            }
        }
    }

    /// Puts back journal entries taken out for an attempt that failed.
    fn restore(&mut self, newest_first: Vec<crate::journal::Entry>) {
        self.journal.entries.extend(newest_first.into_iter().rev());
    }

    /// What holds this device's shared routes (its exclude routes).
    fn holder(&self) -> Holder {
        Holder::Config(self.path.clone())
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

/// Opens a new tun/tap, marks it ours and journals its removal.
fn open_tun(k: &mut Kernel, tap: bool) -> Result<NewLink> {
    let (fd, name) = crate::sys::tun_open(tap, "").map_err(|e| Error::io("open /dev/net/tun", e))?;
    let ifindex = netlink::link::index_of(&name).ok_or_else(|| Error::failed(format!("new device {name} vanished")))?;
    // On error the fd closes here, and the kernel removes the tun with it.
    k.rtnl.request(netlink::link::mark(ifindex))?;
    let mut journal = Journal::default();
    apply::record(k, &mut journal, Undo::DelLink { ifindex, name: name.clone() })?;
    Ok(NewLink { journal, fd: Some(fd), ifindex, name, ..Default::default() })
}

/// An Establish with its link made and the route table read.
pub struct Linked {
    link: NewLink,
    routes: Vec<netlink::route::KernelRoute>,
}

/// An Establish kept: the tun fd for the client, the events to announce,
/// log notes, and the previous link's removal (newest first), which the
/// caller runs without holding the loop (deleting a link takes ~20 ms).
pub struct Established {
    pub fd: Option<OwnedFd>,
    pub events: Vec<Notice>,
    pub notes: Vec<String>,
    pub old_links: Vec<Entry>,
}

/// An Establish on its way: the link made, the plan's changes going to the
/// kernel (`applying`, a batch per loop turn), then `establish_commit`.
pub struct Establishing {
    pub applying: Applying,
    link: NewLink,
    plan: plan::Plan,
}
