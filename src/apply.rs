//! The thin layer that sends a plan to the kernel and records each
//! successful change's inverse in the journal.

use crate::error::Result;
use crate::journal::{Journal, Undo};
use crate::netlink::route::KernelRoute;
use crate::netlink::{self, Req, Rtnl};
use crate::plan::Change;

fn request(c: &Change) -> (Req, Undo) {
    match c {
        Change::Link { ifindex, mtu, txqlen } => {
            (netlink::link::set(*ifindex, Some(*mtu), *txqlen, true), Undo::LinkDown { ifindex: *ifindex })
        }
        Change::Addr(a) => (netlink::addr::add(a), Undo::DelAddr(a.clone())),
        Change::Route(r) => (netlink::route::add(r), Undo::DelRoute(r.clone())),
    }
}

/// Applies every change (batched). Each change the kernel made is recorded
/// in `journal`; a change that was already there (EEXIST) is not ours and is
/// not recorded. On the first hard error the changes made by this call are
/// undone and the error returned.
pub fn apply(rtnl: &mut Rtnl, changes: &[Change], journal: &mut Journal) -> Result<()> {
    let (mut reqs, undos): (Vec<Req>, Vec<Undo>) = changes.iter().map(request).unzip();
    let results = rtnl.transact(&mut reqs)?;
    let mut done = Journal::default();
    let mut failure = None;
    for ((res, undo), req) in results.into_iter().zip(undos).zip(&reqs) {
        match res {
            Ok(true) => done.push(undo),
            Ok(false) => {}
            Err(e) if failure.is_none() => failure = Some(e.into_error(req.what.clone())),
            Err(_) => {}
        }
    }
    if let Some(e) = failure {
        for f in undo(rtnl, done.take_all()) {
            log::warn!("rollback: {f}");
        }
        return Err(e);
    }
    for u in done.take_all().into_iter().rev() {
        journal.push(u);
    }
    Ok(())
}

/// Runs undo steps in the given order, best effort; returns what failed.
pub fn undo(rtnl: &mut Rtnl, steps: Vec<Undo>) -> Vec<String> {
    let mut failed = Vec::new();
    let steps: Vec<Undo> = steps
        .into_iter()
        .filter(|u| match u {
            // Only delete the link we made: the ifindex must still carry its name.
            Undo::DelLink { ifindex, name } => netlink::link::name_of(*ifindex).as_deref() == Some(name.as_str()),
            _ => true,
        })
        .collect();
    let mut reqs: Vec<Req> = steps.iter().map(|u| u.request()).collect();
    match rtnl.transact(&mut reqs) {
        Ok(results) => {
            for (r, req) in results.into_iter().zip(&reqs) {
                if let Err(e) = r {
                    failed.push(e.into_error(req.what.clone()).to_string());
                }
            }
        }
        Err(e) => failed.push(e.to_string()),
    }
    failed
}

/// The main routing tables of both families, as the kernel has them now.
pub fn host_routes(rtnl: &mut Rtnl) -> Result<Vec<KernelRoute>> {
    let msgs = rtnl.dump(netlink::route::dump_request(None))?;
    Ok(msgs.iter().filter(|(t, _)| *t == libc::RTM_NEWROUTE).filter_map(|(_, p)| netlink::route::parse(p)).collect())
}
