//! The thin layer that sends a plan to the kernel and records each
//! successful change's inverse in the journal (and its write-ahead file).

use crate::error::Result;
use crate::journal::{Entry, Journal, Undo, Wal};
use crate::netlink::route::KernelRoute;
use crate::netlink::{self, Req, Rtnl};
use crate::plan::Change;

/// The kernel side of the daemon: the RTNL socket and the journal file.
pub struct Kernel {
    pub rtnl: Rtnl,
    pub wal: Wal,
}

fn request(c: &Change) -> (Req, Undo) {
    match c {
        Change::Link { ifindex, mtu, txqlen } => {
            (netlink::link::set(*ifindex, Some(*mtu), *txqlen, true), Undo::LinkDown { ifindex: *ifindex })
        }
        Change::Addr(a) => (netlink::addr::add(a), Undo::DelAddr(a.clone())),
        Change::Route(r) => (netlink::route::add(r), Undo::DelRoute(r.clone())),
        Change::Rule(r) => (netlink::rule::add(r), Undo::DelRule(r.clone())),
    }
}

/// Records undo steps for something already done outside netlink (a tun
/// device we just created). On error the caller undoes that thing itself.
pub fn record(k: &mut Kernel, journal: &mut Journal, u: Undo) -> Result<()> {
    for e in k.wal.record(vec![u])? {
        journal.push(e);
    }
    Ok(())
}

/// Applies every change (batched). The inverses are written ahead to the
/// journal file; each change the kernel made is then kept in `journal`. A
/// change that was already there (EEXIST) is not ours and is not kept. On
/// the first hard error the changes made by this call are undone and the
/// error returned.
pub fn apply(k: &mut Kernel, changes: &[Change], journal: &mut Journal) -> Result<()> {
    let (mut reqs, undos): (Vec<Req>, Vec<Undo>) = changes.iter().map(request).unzip();
    let entries = k.wal.record(undos)?;
    let results = match k.rtnl.transact(&mut reqs) {
        Ok(r) => r,
        Err(e) => {
            // Unknown which were made: undo all (missing ones are tolerated).
            undo(k, entries.into_iter().rev().collect());
            return Err(e);
        }
    };
    let mut done = Journal::default();
    let mut not_ours = Vec::new();
    let mut failure = None;
    for ((res, entry), req) in results.into_iter().zip(entries).zip(&reqs) {
        match res {
            Ok(true) => done.push(entry),
            Ok(false) => not_ours.push(entry.id),
            Err(e) => {
                not_ours.push(entry.id);
                if failure.is_none() {
                    failure = Some(e.into_error(req.what.to_string()));
                }
            }
        }
    }
    k.wal.done(not_ours);
    if let Some(e) = failure {
        for f in undo(k, done.take_all()) {
            log::warn!("rollback: {f}");
        }
        return Err(e);
    }
    for e in done.take_all().into_iter().rev() {
        journal.push(e);
    }
    Ok(())
}

/// Sends undo steps in order; per step: Ok (done, or nothing to undo) or
/// the failure text. A link is only deleted if its ifindex still carries
/// the name we gave it.
fn run_undo(rtnl: &mut Rtnl, steps: &[&Undo]) -> Vec<std::result::Result<(), String>> {
    let mut out: Vec<Option<std::result::Result<(), String>>> = vec![None; steps.len()];
    let mut idx = Vec::new();
    let mut reqs = Vec::new();
    for (i, u) in steps.iter().enumerate() {
        match u {
            Undo::DelLink { ifindex, name } if netlink::link::name_of(*ifindex).as_deref() != Some(name.as_str()) => {
                out[i] = Some(Ok(()));
            }
            Undo::DelNewLink { name, kind } if link_kind(rtnl, name).as_deref() != Some(kind.as_str()) => {
                out[i] = Some(Ok(()));
            }
            _ => {
                idx.push(i);
                reqs.push(u.request());
            }
        }
    }
    match rtnl.transact(&mut reqs) {
        Ok(results) => {
            for ((r, req), i) in results.into_iter().zip(&reqs).zip(idx) {
                out[i] = Some(r.map(|_| ()).map_err(|e| e.into_error(req.what.to_string()).to_string()));
            }
        }
        Err(e) => {
            for i in idx {
                out[i] = Some(Err(e.to_string()));
            }
        }
    }
    out.into_iter().map(|r| r.unwrap_or(Ok(()))).collect()
}

/// The kind of the link called `name`; None if there is no such link.
fn link_kind(rtnl: &mut Rtnl, name: &str) -> Option<String> {
    let msgs = rtnl.dump(netlink::link::get_by_name(name)).ok()?;
    msgs.iter().filter(|(t, _)| *t == libc::RTM_NEWLINK).find_map(|(_, p)| netlink::link::parse_kind(p)).map(|(_, k)| k)
}

/// Runs undo steps in the given order, best effort; returns what failed.
/// Steps that worked (or found nothing to undo) leave the journal file;
/// failed ones stay there for a later run to retry.
pub fn undo(k: &mut Kernel, steps: Vec<Entry>) -> Vec<String> {
    let refs: Vec<&Undo> = steps.iter().map(|e| &e.undo).collect();
    let results = run_undo(&mut k.rtnl, &refs);
    let mut finished = Vec::new();
    let mut failed = Vec::new();
    for (r, e) in results.into_iter().zip(&steps) {
        match r {
            Ok(()) => finished.push(e.id),
            Err(f) => failed.push(f),
        }
    }
    k.wal.done(finished);
    failed
}

/// Undoes what a previous run left (from its journal file), newest first,
/// but only what is provably ours, checked against the kernel now (the
/// file might be forged): routes and rules with our protocol (the kernel
/// matches it on delete too), and links, link settings and addresses only
/// on links of our kinds that carry our marker (`link::MARKER`). Returns
/// how many steps were run and how many were refused.
pub fn recover(rtnl: &mut Rtnl, steps: &[Undo]) -> (usize, usize) {
    let links: std::collections::HashMap<u32, netlink::link::LinkInfo> = match rtnl.dump(netlink::link::dump_request())
    {
        Ok(msgs) => msgs
            .iter()
            .filter(|(t, _)| *t == libc::RTM_NEWLINK)
            .filter_map(|(_, p)| netlink::link::parse_info(p))
            .map(|l| (l.index, l))
            .collect(),
        Err(e) => {
            log::warn!("recovery: cannot list links ({e}); no link of the journal is touched");
            Default::default()
        }
    };
    let ours = |i: &u32| links.get(i).is_some_and(|l| l.is_ours());
    let (mut run, mut refused) = (Vec::new(), 0);
    for u in steps {
        let ok = match u {
            Undo::DelRoute(r) => r.protocol == netlink::RTPROT_OVPN_NETCFGD,
            Undo::DelRule(r) => r.protocol == netlink::RTPROT_OVPN_NETCFGD,
            Undo::DelAddr(a) => ours(&a.ifindex),
            Undo::LinkDown { ifindex } => ours(ifindex),
            Undo::DelLink { ifindex, name } => ours(ifindex) && links[ifindex].name == *name,
            // A link that never got its marker (a crash right after it was
            // made) is left alone: it cannot be told from someone else's.
            Undo::DelNewLink { name, kind } => {
                links.values().any(|l| l.name == *name && l.kind == *kind && l.is_ours())
            }
        };
        if ok {
            run.push(u);
        } else {
            refused += 1;
            if refused <= 10 {
                log::warn!("recovery: not ours, left alone: {}", u.to_line());
            }
        }
    }
    for f in run_undo(rtnl, &run).into_iter().filter_map(|r| r.err()) {
        log::warn!("recovery: {f}");
    }
    (run.len(), refused)
}

/// Marks a link we just created as ours (see `recover`).
pub fn mark_link(rtnl: &mut Rtnl, ifindex: u32) -> Result<()> {
    rtnl.request(netlink::link::mark(ifindex)).map(|_| ())
}

/// The main routing tables of both families, as the kernel has them now.
pub fn host_routes(rtnl: &mut Rtnl) -> Result<Vec<KernelRoute>> {
    let msgs = rtnl.dump(netlink::route::dump_request(None))?;
    Ok(msgs.iter().filter(|(t, _)| *t == libc::RTM_NEWROUTE).filter_map(|(_, p)| netlink::route::parse(p)).collect())
}

/// The kernel's own answer to "which route does a packet to `dst` from this
/// socket take" (None if it has no route).
pub fn route_to(rtnl: &mut Rtnl, dst: std::net::IpAddr, mark: Option<u32>, uid: u32) -> Option<KernelRoute> {
    let msgs = match rtnl.dump(netlink::route::lookup_request(dst, mark, uid)) {
        Ok(m) => m,
        Err(e) => {
            log::debug!("route lookup for {dst}: {e}");
            return None;
        }
    };
    msgs.iter().filter(|(t, _)| *t == libc::RTM_NEWROUTE).find_map(|(_, p)| netlink::route::parse(p))
}

/// Removes routes and rules carrying our protocol that no journal accounts
/// for (a crashed run whose journal was lost). Returns how many.
pub fn sweep(rtnl: &mut Rtnl) -> Result<usize> {
    let mut reqs: Vec<Req> = host_routes(rtnl)?
        .into_iter()
        .filter(|k| k.route.protocol == netlink::RTPROT_OVPN_NETCFGD)
        .map(|k| netlink::route::del(&k.route))
        .collect();
    for v6 in [false, true] {
        for (t, p) in rtnl.dump(netlink::rule::dump_request(v6))? {
            if t == libc::RTM_NEWRULE {
                if let Some(r) = netlink::rule::parse_ours(&p, netlink::RTPROT_OVPN_NETCFGD) {
                    reqs.push(netlink::rule::del(&r));
                }
            }
        }
    }
    let n = reqs.len();
    for (r, req) in rtnl.transact(&mut reqs)?.into_iter().zip(&reqs) {
        if let Err(e) = r {
            log::warn!("sweep: {}", e.into_error(req.what.to_string()));
        }
    }
    Ok(n)
}
