//! Every bound on what a caller may make the daemon hold or do, in one
//! table. Limits are per UID, so one user cannot use up what others need;
//! the daemon-wide caps are only a safety net, sized for many UIDs.
//!
//! A call's limits are checked before its work (a too-large list is
//! refused after counting, not after parsing), and everything a call does
//! is linear in its input; kernel work goes a batch per loop turn. `make
//! bench` reports the worst wait of another client beside the largest
//! accepted call of each kind (target: 10 ms).

use crate::error::{Error, Result};

/// Addresses one device may hold.
pub const ADDRS_PER_DEVICE: usize = 64;
/// Networks (include and exclude routes) one UID may hold, on all its
/// devices together.
pub const NETWORKS_PER_UID: usize = 10_240;
/// AddNetworks decodes at most this many networks per loop turn: a longer
/// list is a pending operation.
pub const NETWORKS_PER_TURN: usize = 512;
/// DNS servers and search domains one device may hold.
pub const DNS_SERVERS_PER_DEVICE: usize = 32;
pub const DNS_SEARCH_PER_DEVICE: usize = 64;
/// Socket protections one UID may hold at a time (each can be a kernel
/// host route).
pub const PROTECTIONS_PER_UID: usize = 64;
/// Device objects one UID may own.
pub const DEVICES_PER_UID: usize = 64;
/// NetworkChange subscriptions one UID may hold (each one multiplies the
/// signals an Establish sends).
pub const SUBSCRIPTIONS_PER_UID: usize = 4;
/// NetworkChange signals waiting to be sent (they go out a batch at a
/// time, between other clients' replies); beyond this they are dropped.
pub const SIGNALS_QUEUED: usize = 65536;
/// Calls held while their sender's credentials are being looked up: per
/// sender, and senders at once (the bus daemon answers in microseconds, so
/// only a flood reaches these; beyond them a call is refused, not queued).
pub const CALLS_AWAITING_CREDS: usize = 256;
/// Calls held while a pending operation runs (calls on its device and
/// calls that change the kernel), per UID and in all; beyond these they
/// are refused until it completes. A client leaving the bus is always held.
pub const CALLS_HELD_PER_UID: usize = 128;
pub const CALLS_HELD: usize = 1024;
pub const SENDERS_AWAITING_CREDS: usize = 256;
/// Daemon-wide safety caps: room for many UIDs at their full share.
pub const DEVICES_TOTAL: usize = 1024;
pub const SUBSCRIPTIONS_TOTAL: usize = 256;

/// Whether the D-Bus array `it` points at has at most `max` items. It
/// counts without decoding them and stops at `max + 1`, so an oversized
/// list is refused before any parsing.
pub fn fits(mut it: dbus::arg::Iter, max: usize) -> bool {
    let Some(mut a) = it.recurse(dbus::arg::ArgType::Array) else { return true };
    for _ in 0..max {
        if !a.next() {
            return true;
        }
    }
    a.arg_type() == dbus::arg::ArgType::Invalid
}

/// Fails when `uid` already holds `mine` of `what` (its share is
/// `per_uid`), or when all UIDs together hold `all` (the cap is `total`).
pub fn check_share(what: &str, uid: u32, mine: usize, per_uid: usize, all: usize, total: usize) -> Result<()> {
    if mine >= per_uid {
        return Err(Error::failed(format!("uid {uid} already holds {mine} {what} (limit {per_uid} per user)")));
    }
    if all >= total {
        return Err(Error::failed(format!("too many {what} (limit {total} in all)")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_counts_without_decoding() {
        let m = |v: Vec<u32>| dbus::Message::new_method_call("a.b", "/", "a.b", "M").unwrap().append1(v);
        for (list, max, ok) in [(vec![], 0, true), (vec![], 2, true), (vec![1], 0, false), (vec![1, 2, 3], 2, false)] {
            assert_eq!(fits(m(list.clone()).iter_init(), max), ok, "{list:?} {max}");
        }
        assert!(fits(m(vec![1, 2, 3]).iter_init(), 3));
        let not_an_array = dbus::Message::new_method_call("a.b", "/", "a.b", "M").unwrap().append1(7u32);
        assert!(fits(not_an_array.iter_init(), 0));
    }

    #[test]
    fn shares_fit_the_caps() {
        const { assert!(DEVICES_PER_UID <= DEVICES_TOTAL && SUBSCRIPTIONS_PER_UID <= SUBSCRIPTIONS_TOTAL) };
        const { assert!(CALLS_HELD_PER_UID <= CALLS_HELD && NETWORKS_PER_TURN <= NETWORKS_PER_UID) };
        assert!(check_share("devices", 5, DEVICES_PER_UID, DEVICES_PER_UID, 0, DEVICES_TOTAL).is_err());
        assert!(check_share("devices", 5, 0, DEVICES_PER_UID, DEVICES_TOTAL, DEVICES_TOTAL).is_err());
        assert!(check_share("devices", 5, 0, DEVICES_PER_UID, 0, DEVICES_TOTAL).is_ok());
    }
}
