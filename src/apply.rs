//! The thin layer that sends a plan to the kernel and records each
//! successful change's inverse in the journal (and its write-ahead file).

use crate::error::{Error, Result};
use crate::journal::{Entry, Journal, Undo, Wal};
use crate::netlink::route::KernelRoute;
use crate::netlink::{self, Batches, Req, Socket, What, RTPROT_OVPN_NETCFGD};
use crate::plan::{self, Change, Misroute, Move};
use crate::shared::{Holder, Shared};

/// The kernel side of the daemon: the RTNL sockets, the journal file, and
/// the routes several sessions share.
pub struct Kernel {
    /// For requests answered at once.
    pub rtnl: Socket,
    /// For the batches of a pending operation, which the loop polls
    /// (`sessions::ops`): its own sequence numbers, so that requests on
    /// `rtnl` between two batches never read its answers.
    pub ops: Socket,
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
    journal.entries.extend(k.wal.record(vec![u])?);
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
    changes: Vec<Change>,
    journal: &mut Journal,
    holder: &Holder,
    before: Vec<KernelRoute>,
) -> Result<()> {
    let mut a = start(k, changes, holder.clone(), before);
    while !a.check_step() {}
    if let Some(e) = a.refused() {
        return Err(e);
    }
    while !a.step(k, false) {
        a.batches.expect_answer(&mut k.rtnl);
    }
    while !a.check_step() {}
    a.finish(k, journal)
}

/// Changes checked against a table per `check_step` (one loop turn).
const CHECK_SLICE: usize = 2048;

/// An apply on its way (see `apply`): checked against the table as it was
/// a slice per `check_step`, its requests encoded, written ahead and sent a
/// batch per `advance`, checked against the table read back (`check_step`
/// again), its outcome kept or rolled back by `finish`.
pub struct Applying {
    changes: Vec<Change>,
    /// Indexes into `changes`: the ones to send, in order (as many as
    /// `entries` are on their way), and the shared routes already held
    /// (only held by `holder` too).
    send: Vec<usize>,
    again: Vec<usize>,
    entries: Vec<Entry>,
    /// The changes' requests, then the dump that reads the table back.
    batches: Batches,
    /// The route table read back once every change is answered (Some
    /// from when its dump is pushed).
    after: Option<Vec<KernelRoute>>,
    before: Vec<KernelRoute>,
    holder: Holder,
    /// The check in progress: its table's index, and the changes checked.
    table: Option<plan::Table>,
    checked: usize,
    /// A change the check found would not forward as asked.
    misroute: Option<Error>,
}

/// Prepares `changes` for sending (`before`: the table as it was).
pub fn start(k: &Kernel, changes: Vec<Change>, holder: Holder, before: Vec<KernelRoute>) -> Applying {
    let (again, send): (Vec<usize>, Vec<usize>) =
        (0..changes.len()).partition(|&i| matches!(&changes[i], Change::SharedRoute(r) if k.shared.contains(r)));
    Applying {
        changes,
        send,
        again,
        entries: Vec::new(),
        batches: Default::default(),
        after: None,
        before,
        holder,
        table: None,
        checked: 0,
        misroute: None,
    }
}

impl Applying {
    /// Checks the changes a slice at a time (`plan::check`): before
    /// anything is sent, against the table as it was; once everything is
    /// answered, against the table read back. True once all are checked,
    /// or one is misrouted (`refused`, or the failure of `finish`).
    pub fn check_step(&mut self) -> bool {
        if self.misroute.is_some() || self.batches.failure.is_some() {
            return true;
        }
        let applied = self.after.is_some();
        let routes = self.after.as_deref().unwrap_or(&self.before);
        let Some(table) = &self.table else {
            // Indexing 10k routes is a turn's work of its own.
            self.table = Some(plan::Table::of(routes));
            return false;
        };
        if self.checked == self.changes.len() {
            // Done in the turns before, so that what follows has a turn of
            // its own. The next check (of the table read back) starts afresh.
            (self.table, self.checked) = (None, 0);
            return true;
        }
        let end = self.changes.len().min(self.checked + CHECK_SLICE);
        if let Err(m) = plan::check(&self.changes[self.checked..end], table, routes, applied) {
            self.misroute = Some(misroute_error(&m));
            return true;
        }
        self.checked = end;
        false
    }

    /// Why the changes must not be sent, once `check_step` is done before sending.
    pub fn refused(&mut self) -> Option<Error> {
        self.misroute.take()
    }

    /// Moves on by one batch on the loop's socket; true when done. With
    /// `expect`, the apply fails first unless the answers in flight are there.
    pub fn advance(&mut self, k: &mut Kernel, expect: bool) -> bool {
        if expect {
            self.batches.expect_answer(&mut k.ops);
        }
        self.step(k, true)
    }

    /// Reads the answers of the batch in flight, then writes the next
    /// batch's undo ahead and sends it (on `k.ops` if `paced`); once every
    /// change is answered, reads the table back. True when all is answered.
    fn step(&mut self, k: &mut Kernel, paced: bool) -> bool {
        loop {
            let after = &mut self.after;
            let read_back = |m: &netlink::attr::NlMsgRef<'_>| {
                if let (Some(routes), libc::RTM_NEWROUTE) = (after.as_mut(), m.ty) {
                    routes.extend(netlink::route::parse(m.payload));
                }
            };
            if !self.batches.advance(if paced { &mut k.ops } else { &mut k.rtnl }, read_back) {
                return false;
            }
            if self.batches.failure.is_some() || self.after.is_some() {
                return true;
            }
            let next = self.entries.len();
            if next == self.send.len() {
                // Then the table is read back, to check that every route
                // forwards as asked.
                if !self.changes.iter().any(|c| c.route().is_some()) {
                    return true;
                }
                self.after = Some(Vec::new());
                let what = What::Text("reading the routes back".into());
                self.batches.push(vec![Req { bytes: netlink::route::dump_request(), ok_errnos: &[], what }]);
                continue;
            }
            let end = self.send.len().min(next + netlink::BATCH);
            let (reqs, undos): (Vec<Req>, Vec<Undo>) =
                self.send[next..end].iter().map(|&i| request(&self.changes[i])).unzip();
            match k.wal.record(undos) {
                Ok(entries) => {
                    self.entries.extend(entries);
                    self.batches.push(reqs);
                }
                // The journal file refused an entry: nothing more is sent.
                Err(e) => self.batches.fail(e),
            }
        }
    }

    /// Keeps what the kernel made (a device's own changes in `journal`),
    /// or undoes all of it on any failure (of a change, or of the check of
    /// the table read back, which `check_step` has completed).
    pub fn finish(self, k: &mut Kernel, journal: &mut Journal) -> Result<()> {
        let Applying { changes, send, again, entries, batches: mut done, before, holder, misroute, .. } = self;
        let mut failure = done.failure.take();
        let (mut made, mut not_ours): (Vec<(&Change, Entry)>, Vec<u64>) = (Vec::new(), Vec::new());
        for (j, ((res, entry), &i)) in done.out.iter().zip(entries).zip(&send).enumerate() {
            let c = &changes[i];
            let ours = match res {
                Some(Ok(changed)) => *changed,
                Some(Err(_)) => {
                    failure = failure.or_else(|| done.error(j));
                    false
                }
                // The transport failed while this was in flight.
                None => presumed_made(c, &before),
            };
            if ours {
                made.push((c, entry));
            } else {
                not_ours.push(entry.id);
            }
        }
        k.wal.done(not_ours);
        if failure.is_none() && changes.iter().any(|c| c.route().is_some()) {
            failure = done.error(send.len()).or(misroute);
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
                Change::SharedRoute(r) => k.shared.insert(r.clone(), e, &holder),
                _ => journal.entries.push(e),
            }
        }
        // (`again` holds shared routes only.)
        for r in again.iter().filter_map(|&i| changes[i].route()) {
            k.shared.hold(r, &holder);
        }
        Ok(())
    }
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
    let via = |g: Option<std::net::IpAddr>| g.map(|g| format!("via {g} ")).unwrap_or_default();
    let w = &m.wanted;
    let asked = format!("{} {}dev {}", w.dst, via(w.gateway), dev(w.oif));
    let Some(k) = &m.found else {
        return Error::conflict(format!("route {asked} is not in the kernel after it was added; nothing was changed"));
    };
    let r = &k.route;
    let rtype = if k.rtype != libc::RTN_UNICAST { format!("type {} ", k.rtype) } else { String::new() };
    let oif = if r.oif != 0 { format!("dev {} ", dev(r.oif)) } else { String::new() };
    let theirs = if r.protocol == RTPROT_OVPN_NETCFGD { " (another VPN session's route)" } else { "" };
    let now = format!("{rtype}{}{oif}metric {} proto {}{theirs}", via(r.gateway), r.kernel_metric(), r.protocol);
    Error::conflict(format!(
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

/// The requests for undo steps, in order, and per step the index of its
/// request (None: nothing to undo). A link is only deleted if its ifindex
/// still carries the name we gave it.
fn undo_requests<'a>(rtnl: &mut Socket, steps: impl Iterator<Item = &'a Undo>) -> (Vec<Option<usize>>, Vec<Req>) {
    let mut reqs = Vec::new();
    let sent = steps
        .map(|u| match u {
            Undo::DelLink { ifindex, name } if netlink::link::name_of(*ifindex).as_deref() != Some(name.as_str()) => {
                None
            }
            Undo::DelNewLink { name, kind } if link_kind(rtnl, name).as_deref() != Some(kind.as_str()) => None,
            _ => {
                reqs.push(u.request());
                Some(reqs.len() - 1)
            }
        })
        .collect();
    (sent, reqs)
}

/// Per undo step: Ok (done, or nothing to undo) or the failure text. If
/// the transport failed, every step sent fails (it is retried later).
fn undo_outcomes(sent: &[Option<usize>], done: Batches) -> Vec<std::result::Result<(), String>> {
    let outcome = |j: usize| match &done.failure {
        Some(e) => Err(e.to_string()),
        None => done.error(j).map_or(Ok(()), |e| Err(e.to_string())),
    };
    sent.iter().map(|s| s.map_or(Ok(()), outcome)).collect()
}

/// The kind of the link called `name`; None if there is no such link.
fn link_kind(rtnl: &mut Socket, name: &str) -> Option<String> {
    let msgs = rtnl.dump(netlink::link::get_by_name(name), libc::RTM_NEWLINK).ok()?;
    msgs.iter().find_map(|p| netlink::link::parse_info(p)).map(|l| l.kind)
}

/// Runs undo steps in the given order, best effort; returns what failed.
/// Steps that worked (or found nothing to undo) leave the journal file;
/// failed ones stay there for a later run to retry.
pub fn undo(k: &mut Kernel, steps: Vec<Entry>) -> Vec<String> {
    let mut u = undo_start(steps);
    u.run(k);
    u.finish(k)
}

/// Undo steps on their way (see `undo`): their requests made and sent a
/// batch per `advance`.
pub struct Undoing {
    steps: Vec<Entry>,
    /// Per step made into a request so far: its index in `batches`.
    sent: Vec<Option<usize>>,
    pushed: usize,
    batches: Batches,
}

pub fn undo_start(steps: Vec<Entry>) -> Undoing {
    Undoing { steps, sent: Vec::new(), pushed: 0, batches: Default::default() }
}

impl Undoing {
    /// Moves on by one batch on the loop's socket; true when done. With
    /// `expect`, the rest fails first unless the answers in flight are there.
    pub fn advance(&mut self, k: &mut Kernel, expect: bool) -> bool {
        if expect {
            self.batches.expect_answer(&mut k.ops);
        }
        self.step(k, true)
    }

    /// Runs to the end on the socket for requests answered at once.
    pub fn run(&mut self, k: &mut Kernel) {
        while !self.step(k, false) {
            self.batches.expect_answer(&mut k.rtnl);
        }
    }

    /// Reads the answers of the batch in flight, then makes the next
    /// batch's requests and sends it (on `k.ops` if `paced`). True when all
    /// is answered.
    fn step(&mut self, k: &mut Kernel, paced: bool) -> bool {
        loop {
            if !self.batches.advance(if paced { &mut k.ops } else { &mut k.rtnl }, |_| {}) {
                return false;
            }
            if self.batches.failure.is_some() || self.sent.len() == self.steps.len() {
                return true;
            }
            let end = self.steps.len().min(self.sent.len() + netlink::BATCH);
            let (sent, reqs) = undo_requests(&mut k.rtnl, self.steps[self.sent.len()..end].iter().map(|e| &e.undo));
            let base = self.pushed;
            self.sent.extend(sent.into_iter().map(|s| s.map(|j| j + base)));
            self.pushed += reqs.len();
            self.batches.push(reqs);
        }
    }

    /// Takes the finished steps out of the journal file; returns what
    /// failed (steps never sent after a failure included).
    pub fn finish(self, k: &mut Kernel) -> Vec<String> {
        let Undoing { steps, sent, batches, .. } = self;
        let mut results = undo_outcomes(&sent, batches);
        let last = results.iter().rev().find_map(|r| r.clone().err()).unwrap_or_default();
        results.resize(steps.len(), Err(last));
        let (finished, failed): (Vec<_>, Vec<_>) = steps.iter().zip(results).partition(|(_, r)| r.is_ok());
        k.wal.done(finished.into_iter().map(|(e, _)| e.id));
        failed.into_iter().filter_map(|(_, r)| r.err()).collect()
    }
}

/// Moves shared routes to the paths `moves` name: per move, the new
/// route's undo is written ahead, then the old route is deleted and the
/// new one added in one batch. The holders keep the moved route. Returns
/// the moves that took effect; the others are logged. A new route whose
/// place someone else's route took meanwhile (EEXIST) is theirs: ours is
/// then gone, and forgotten.
pub fn reroute(k: &mut Kernel, moves: Vec<Move>) -> Vec<Move> {
    let undos = moves.iter().map(|m| Undo::DelRoute(m.new.clone())).collect();
    let Ok(entries) = k.wal.record(undos).map_err(|e| log::warn!("routes not moved: {e}")) else {
        return Vec::new();
    };
    let reqs = moves.iter().flat_map(|m| [netlink::route::del(&m.old), netlink::route::add(&m.new)]).collect();
    let sent = k.rtnl.transact(reqs);
    if let Some(e) = &sent.failure {
        log::warn!("moving routes: {e}");
    }
    let mut done = Vec::new();
    let mut moved = Vec::new();
    for ((m, entry), res) in moves.into_iter().zip(entries).zip(sent.out.chunks(2)) {
        let deleted = matches!(res.first(), Some(Some(Ok(_))));
        match res.get(1).cloned().flatten() {
            Some(Ok(true)) => {
                done.extend(k.shared.replace(&m.old, m.new.clone(), entry).map(|e| e.id));
                moved.push(m);
            }
            // EEXIST after our old route went: another's took the key.
            // (Had the delete failed, or not been sent, the route in the
            // way is our own.)
            Some(Ok(false)) if deleted && sent.failure.is_none() => {
                log::warn!("route {} is someone else's now: ours is not put back", m.new);
                done.push(entry.id);
                done.extend(k.shared.forget(&m.old).map(|e| e.id));
            }
            Some(Err(e)) => {
                log::warn!("{}", e.into_error(format!("moving route {} to {}", m.old, m.new)));
                done.push(entry.id);
            }
            _ => done.push(entry.id),
        }
    }
    k.wal.done(done);
    moved
}

/// Undoes what a previous run left (from its journal file), newest first,
/// but only what is provably ours, checked against the kernel now (the
/// file might be forged): routes and rules with our protocol (the kernel
/// matches it on delete too), and links, link settings and addresses only
/// on links of our kinds that carry our marker (`link::MARKER`). Returns
/// how many steps were run and how many were refused.
pub fn recover(rtnl: &mut Socket, steps: &[Undo]) -> (usize, usize) {
    // A sorted vector (the kernel dumps links mostly in index order, so
    // each insertion lands at the end): no hash map or sort code for it.
    let msgs = rtnl.dump(netlink::link::dump_request(), libc::RTM_NEWLINK);
    let msgs = msgs.map_err(|e| log::warn!("recovery: cannot list links ({e}); no link of the journal is touched"));
    let links: crate::vecmap::VecMap<u32, netlink::link::LinkInfo> =
        msgs.unwrap_or_default().iter().filter_map(|p| netlink::link::parse_info(p)).map(|l| (l.index, l)).collect();
    let ours = |i: &u32| links.get(i).is_some_and(|l| l.is_ours());
    let (mut run, mut refused) = (Vec::new(), 0);
    for u in steps {
        let ok = match u {
            Undo::DelRoute(r) => r.protocol == RTPROT_OVPN_NETCFGD,
            Undo::DelRule(r) => r.protocol == RTPROT_OVPN_NETCFGD,
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
                log::warn!("recovery: not ours, left alone: {u}");
            }
        }
    }
    let (sent, reqs) = undo_requests(rtnl, run.iter().copied());
    for f in undo_outcomes(&sent, rtnl.transact(reqs)).into_iter().filter_map(|r| r.err()) {
        log::warn!("recovery: {f}");
    }
    (run.len(), refused)
}

/// The main routing tables of both families, as the kernel has them now.
pub fn host_routes(rtnl: &mut Socket) -> Result<Vec<KernelRoute>> {
    let msgs = rtnl.dump(netlink::route::dump_request(), libc::RTM_NEWROUTE)?;
    Ok(msgs.iter().filter_map(|p| netlink::route::parse(p)).collect())
}

/// The kernel's own answer to "which route does a packet to `dst` from this
/// socket take" (None if it has no route).
pub fn route_to(rtnl: &mut Socket, dst: std::net::IpAddr, mark: Option<u32>, uid: u32) -> Option<KernelRoute> {
    let msgs = rtnl.dump(netlink::route::lookup_request(dst, mark, uid), libc::RTM_NEWROUTE);
    msgs.map_err(|e| log::debug!("route lookup for {dst}: {e}")).ok()?.iter().find_map(|p| netlink::route::parse(p))
}

/// Removes routes and rules carrying our protocol that no journal accounts
/// for (a crashed run whose journal was lost). Returns how many.
pub fn sweep(rtnl: &mut Socket) -> Result<usize> {
    let ours = |k: &KernelRoute| (k.route.protocol == RTPROT_OVPN_NETCFGD).then(|| netlink::route::del(&k.route));
    let mut reqs: Vec<Req> = host_routes(rtnl)?.iter().filter_map(ours).collect();
    for v6 in [false, true] {
        for p in rtnl.dump(netlink::rule::dump_request(v6), libc::RTM_NEWRULE)? {
            reqs.extend(netlink::rule::parse_ours(&p, RTPROT_OVPN_NETCFGD).map(|r| netlink::rule::del(&r)));
        }
    }
    let n = reqs.len();
    let mut done = rtnl.transact(reqs);
    if let Some(e) = done.failure.take() {
        return Err(e);
    }
    for e in (0..n).filter_map(|i| done.error(i)) {
        log::warn!("sweep: {e}");
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
            protocol: RTPROT_OVPN_NETCFGD,
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
