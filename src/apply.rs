//! The thin layer that sends a plan to the kernel and records each
//! successful change's inverse in the journal (and its write-ahead file).

use crate::error::{Error, Result};
use crate::journal::{Entry, Journal, Undo, Wal};
use crate::netlink::route::KernelRoute;
use crate::netlink::{self, Req, Rtnl};
use crate::plan::{self, Change, Misroute, Move};
use crate::shared::{Holder, Shared};

/// The kernel side of the daemon: the RTNL socket, the journal file, and
/// the routes several sessions share.
pub struct Kernel {
    pub rtnl: Rtnl,
    pub wal: Wal,
    pub shared: Shared,
}

fn request(c: &Change) -> (Req, Undo) {
    match c {
        Change::Link { ifindex, mtu, txqlen } => {
            (netlink::link::set(*ifindex, Some(*mtu), *txqlen, true), Undo::LinkDown { ifindex: *ifindex })
        }
        Change::Addr(a) => (netlink::addr::add(a), Undo::DelAddr(a.clone())),
        Change::Route(r) | Change::SharedRoute(r) => (netlink::route::add(r), Undo::DelRoute(r.clone())),
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

/// Applies every change (batched), so that afterwards each route forwards
/// as asked, or not at all. The inverses are written ahead to the journal
/// file; each change the kernel made is then kept: a device's own in
/// `journal`, a shared route in `k.shared` under `holder`. A change that
/// was already there (EEXIST) is someone else's and is not kept; a shared
/// route we already hold is not sent again, only held by `holder` too.
///
/// `before` is the routing table as it was: a route the plan wants that it
/// shows going elsewhere fails the call before anything is sent. After
/// sending, the table is read back and checked again. On any failure the
/// changes made by this call are undone and the error returned.
pub fn apply(
    k: &mut Kernel,
    changes: &[Change],
    journal: &mut Journal,
    holder: &Holder,
    before: &[KernelRoute],
) -> Result<()> {
    plan::check(changes, before, false).map_err(|m| misroute_error(&m))?;
    let (again, send): (Vec<&Change>, Vec<&Change>) =
        changes.iter().partition(|c| matches!(c, Change::SharedRoute(r) if k.shared.contains(r)));
    let (mut reqs, undos): (Vec<Req>, Vec<Undo>) = send.iter().map(|c| request(c)).unzip();
    let entries = k.wal.record(undos)?;
    let (results, mut failure) = k.rtnl.transact_partial(&mut reqs);
    let mut made: Vec<(&Change, Entry)> = Vec::new();
    let mut not_ours = Vec::new();
    for (((res, entry), req), c) in results.into_iter().zip(entries).zip(&reqs).zip(&send) {
        let ours = match res {
            Some(Ok(changed)) => changed,
            Some(Err(e)) => {
                if failure.is_none() {
                    failure = Some(e.into_error(req.what.to_string()));
                }
                false
            }
            // The transport failed while this was in flight.
            None => presumed_made(c, before),
        };
        if ours {
            made.push((c, entry));
        } else {
            not_ours.push(entry.id);
        }
    }
    k.wal.done(not_ours);
    if failure.is_none() && changes.iter().any(|c| c.route().is_some()) {
        failure = match host_routes(&mut k.rtnl) {
            Ok(now) => plan::check(changes, &now, true).err().map(|m| misroute_error(&m)),
            Err(e) => Some(e),
        };
    }
    if let Some(e) = failure {
        let steps = made.into_iter().rev().map(|(_, e)| e).collect();
        for f in undo(k, steps) {
            log::warn!("rollback: {f}");
        }
        return Err(e);
    }
    for (c, e) in made {
        match c {
            Change::SharedRoute(r) => k.shared.insert(r.clone(), e, holder),
            _ => journal.push(e),
        }
    }
    for c in again {
        if let Change::SharedRoute(r) = c {
            k.shared.hold(r, holder);
        }
    }
    Ok(())
}

/// Whether a change whose answer was lost made something of ours: a route
/// did unless `before` had one under the same key (the kernel would have
/// said EEXIST); a rule may have existed (left alone); link settings and
/// addresses are on a link we created.
fn presumed_made(c: &Change, before: &[KernelRoute]) -> bool {
    match c {
        Change::Route(r) | Change::SharedRoute(r) => !before.iter().any(|k| k.route.key() == r.key()),
        Change::Rule(_) => false,
        Change::Link { .. } | Change::Addr(_) => true,
    }
}

/// The error for a route that would not forward as asked: names the route
/// and where the kernel sends that prefix instead.
fn misroute_error(m: &Misroute) -> Error {
    let dev = |i: u32| netlink::link::name_of(i).unwrap_or_else(|| format!("#{i}"));
    let w = &m.wanted;
    let mut asked = format!("{}", w.dst);
    if let Some(g) = w.gateway {
        asked.push_str(&format!(" via {g}"));
    }
    asked.push_str(&format!(" dev {}", dev(w.oif)));
    let Some(k) = &m.found else {
        return Error::Conflict(format!("route {asked} is not in the kernel after it was added; nothing was changed"));
    };
    let r = &k.route;
    let mut now = String::new();
    if k.rtype != libc::RTN_UNICAST {
        now.push_str(&format!("type {} ", k.rtype));
    }
    if let Some(g) = r.gateway {
        now.push_str(&format!("via {g} "));
    }
    if r.oif != 0 {
        now.push_str(&format!("dev {} ", dev(r.oif)));
    }
    now.push_str(&format!("metric {} proto {}", r.kernel_metric(), r.protocol));
    if r.protocol == netlink::RTPROT_OVPN_NETCFGD {
        now.push_str(" (another VPN session's route)");
    }
    Error::Conflict(format!(
        "route {asked}: the kernel already routes {} {now}; not installed, nothing was changed",
        r.dst
    ))
}

/// Lets go of the shared routes `holder` holds; the ones nobody holds any
/// more are removed. Returns what failed.
pub fn release(k: &mut Kernel, holder: &Holder) -> Vec<String> {
    let last = k.shared.release(holder);
    undo(k, last)
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

/// Moves shared routes to the paths `moves` name: per move, the new
/// route's undo is written ahead, then the old route is deleted and the
/// new one added in one batch. The holders keep the moved route. Returns
/// the moves that took effect; the others are logged. A new route whose
/// place someone else's route took meanwhile (EEXIST) is theirs: ours is
/// then gone, and forgotten.
pub fn reroute(k: &mut Kernel, moves: Vec<Move>) -> Vec<Move> {
    let undos = moves.iter().map(|m| Undo::DelRoute(m.new.clone())).collect();
    let entries = match k.wal.record(undos) {
        Ok(e) => e,
        Err(e) => {
            log::warn!("routes not moved: {e}");
            return Vec::new();
        }
    };
    let mut reqs: Vec<Req> =
        moves.iter().flat_map(|m| [netlink::route::del(&m.old), netlink::route::add(&m.new)]).collect();
    let (results, failure) = k.rtnl.transact_partial(&mut reqs);
    if let Some(e) = &failure {
        log::warn!("moving routes: {e}");
    }
    let mut done = Vec::new();
    let mut moved = Vec::new();
    for ((m, entry), res) in moves.into_iter().zip(entries).zip(results.chunks(2)) {
        let deleted = matches!(res.first(), Some(Some(Ok(_))));
        match res.get(1).cloned().flatten() {
            Some(Ok(true)) => {
                done.extend(k.shared.replace(&m.old, m.new.clone(), entry).map(|e| e.id));
                moved.push(m);
            }
            // EEXIST after our old route went: another's took the key.
            // (Had the delete failed, or not been sent, the route in the
            // way is our own.)
            Some(Ok(false)) if deleted && failure.is_none() => {
                log::warn!("route {} is someone else's now: ours is not put back", m.new);
                done.push(entry.id);
                done.extend(k.shared.forget(&m.old).map(|e| e.id));
            }
            other => {
                if let Some(Err(e)) = other {
                    log::warn!("{}", e.into_error(format!("moving route {} to {}", m.old, m.new)));
                }
                done.push(entry.id);
            }
        }
    }
    k.wal.done(done);
    moved
}

/// Drops journal entries whose change the kernel already undid itself
/// (routes and addresses of a link someone else deleted): nothing is sent.
pub fn forget(k: &mut Kernel, steps: Vec<Entry>) {
    k.wal.done(steps.into_iter().map(|e| e.id));
}

/// Undoes what a previous run left (from its journal file), newest first,
/// but only what is provably ours, checked against the kernel now (the
/// file might be forged): routes and rules with our protocol (the kernel
/// matches it on delete too), and links, link settings and addresses only
/// on links of our kinds that carry our marker (`link::MARKER`). Returns
/// how many steps were run and how many were refused.
pub fn recover(rtnl: &mut Rtnl, steps: &[Undo]) -> (usize, usize) {
    // A sorted vector (the kernel dumps links mostly in index order, so
    // each insertion lands at the end): no hash map or sort code for it.
    let links: crate::vecmap::VecMap<u32, netlink::link::LinkInfo> = match rtnl.dump(netlink::link::dump_request()) {
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
            Undo::DelLink { ifindex, name } => links.get(ifindex).is_some_and(|l| l.is_ours() && l.name == *name),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::route::{Route, RT_TABLE_MAIN};

    fn route(dst: &str, oif: u32, metric: Option<u32>) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            gateway: None,
            oif,
            metric,
            table: RT_TABLE_MAIN,
            protocol: netlink::RTPROT_OVPN_NETCFGD,
            onlink: false,
        }
    }

    #[test]
    fn a_lost_answer_counts_as_ours_only_if_the_key_was_free() {
        let before = [KernelRoute { route: route("10.97.0.0/24", 2, Some(0)), rtype: libc::RTN_UNICAST, scope: 0 }];
        // Same table, prefix and metric as a route that was there: the kernel said EEXIST.
        assert!(!presumed_made(&Change::SharedRoute(route("10.97.0.0/24", 9, None)), &before));
        assert!(presumed_made(&Change::SharedRoute(route("10.97.0.0/24", 9, Some(5))), &before));
        assert!(presumed_made(&Change::Route(route("10.96.0.0/24", 9, None)), &before));
        // IPv6 "no metric" is 1024.
        let v6 = [KernelRoute { route: route("2001:db8::/48", 2, Some(1024)), rtype: libc::RTN_UNICAST, scope: 0 }];
        assert!(!presumed_made(&Change::Route(route("2001:db8::/48", 9, None)), &v6));
    }
}
