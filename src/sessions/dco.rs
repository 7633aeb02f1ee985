//! DCO state outside the calls: the kernel family, the notifications of
//! the peers socket, the pipes waiting for room, and the peers of a device
//! that goes away.

use crate::dco::{self, pipe, PeerId, Reply, Request};
use crate::dco_session::{self, DcoKernel};
use crate::device::Device;
use crate::error::Error;

use super::Sessions;

impl Sessions {
    /// The resolved family, probing again if none was found so far (the
    /// module may have been loaded since).
    pub(crate) fn dco_kernel(&mut self) -> Option<&mut DcoKernel> {
        if self.dco.is_none() {
            self.dco = DcoKernel::probe()
                .inspect(|k| log::info!("DCO: using generic netlink family {} (id {})", k.genl.family, k.genl.id));
        }
        self.dco.as_mut()
    }

    /// Removes the kernel peers of a device that is going away (their keys
    /// go with them) and closes its transport sockets and pipe. The netdev
    /// itself is deleted by the device's journal (DelLink).
    pub(crate) fn dco_release(&mut self, d: &mut Device) {
        // Dropping `x` closes the transport sockets and both pipe ends.
        let Some(x) = d.dco.take() else { return };
        let Some(k) = self.dco.as_mut() else { return };
        for id in x.peers.keys() {
            let Ok(peer) = PeerId::new(*id) else { continue };
            match k.request(x.ifindex, &Request::PeerDel(peer), &format!("DEL_PEER {id}")) {
                Ok(()) => log::info!("{}: DCO peer {id} removed from {}", d.path, x.name),
                // Already gone (expired, or the netdev was deleted by someone else).
                Err(e) if matches!(e.kernel_errno(), libc::ENOENT | libc::ENODEV | libc::EINVAL) => {}
                Err(e) => log::warn!("{}: {e}", d.path),
            }
        }
    }

    /// Extra fds for the poll loop: the command and notification sockets
    /// (POLLIN) and the pipes that have records waiting for room (POLLOUT).
    pub(crate) fn dco_poll_fds(&self) -> Vec<(std::os::fd::RawFd, nix::poll::PollFlags)> {
        use nix::poll::PollFlags;
        // Always read them, so notifications about other programs' ovpn
        // devices never pile up (and get mistaken for ours later), and no
        // stray answer sits on the command socket.
        let socks = self.dco.iter().flat_map(|k| k.poll_fds()).map(|fd| (fd, PollFlags::POLLIN));
        let pipes = self.devices.values().filter_map(|d| d.dco.as_ref()?.pipe.pending_fd());
        socks.chain(pipes.map(|fd| (fd, PollFlags::POLLOUT))).collect()
    }

    /// Called when one of `dco_poll_fds` is ready: forwards notifications,
    /// resyncs after a loss, and flushes waiting pipe records.
    pub(crate) fn dco_service(&mut self) {
        let Some(k) = self.dco.as_mut() else { return };
        k.discard_unasked();
        let n = k.notifications();
        for r in n.replies {
            self.dco_notification(r);
        }
        for (ifindex, text) in &n.errors {
            self.dco_pipe_error(*ifindex, text);
        }
        if n.lost {
            self.dco_resync();
        }
        for x in self.devices.values_mut().filter_map(|d| d.dco.as_mut()) {
            x.pipe.flush();
        }
    }

    fn dco_notification(&mut self, r: Reply) {
        let Some(family) = self.dco.as_ref().map(|k| k.genl.family) else { return };
        let (ifindex, record, text) = match r {
            Reply::PeerDeleted(ev) => (
                ev.ifindex,
                pipe::peer_deleted(family, &ev).to_vec(),
                format!("peer {} deleted (reason {:?})", ev.peer_id, ev.reason),
            ),
            Reply::KeySwapNeeded(ev) => (
                ev.ifindex,
                pipe::key_swap_needed(&ev).to_vec(),
                format!("peer {} key {} needs a swap", ev.peer_id, ev.key_id),
            ),
            _ => return,
        };
        // Only this daemon's devices; other ovpn devices are not ours to report.
        let found =
            self.devices.values_mut().find_map(|d| Some((&d.path, d.dco.as_mut().filter(|x| x.ifindex == ifindex)?)));
        let Some((path, x)) = found else { return };
        log::info!("{path}: DCO {text} on {}", x.name);
        x.pipe.push(record);
        if let Reply::PeerDeleted(ev) = r {
            // A P2P NEW_PEER may have replaced the peer under the same id:
            // close its socket only if the kernel has no such peer any more.
            let gone =
                |k: &mut DcoKernel| PeerId::new(ev.peer_id).is_ok_and(|p| matches!(k.get_peer(ifindex, p), Ok(None)));
            if x.peers.contains_key(&ev.peer_id) && self.dco.as_mut().is_some_and(gone) {
                x.peers.remove(&ev.peer_id);
            }
        }
    }

    /// Writes an error record to the pipe of device `ifindex` if it is one
    /// of ours, or to every DCO device's pipe for None.
    fn dco_pipe_error(&mut self, ifindex: Option<u32>, text: &str) {
        for d in self.devices.values_mut() {
            if let Some(x) = d.dco.as_mut().filter(|x| ifindex.is_none() || ifindex == Some(x.ifindex)) {
                log::warn!("{}: {text}", d.path);
                x.pipe.push(pipe::error(text));
            }
        }
    }

    /// After lost notifications: asks the kernel which peers still exist
    /// and reports the ones that vanished unseen (reason unknown: sent as
    /// TEARDOWN).
    fn dco_resync(&mut self) {
        log::warn!("DCO: notifications were lost; re-reading the peers");
        let Some(k) = self.dco.as_mut() else { return };
        let family = k.genl.family;
        for d in self.devices.values_mut() {
            let (path, Some(x)) = (&d.path, d.dco.as_mut()) else { continue };
            let ifindex = x.ifindex;
            let gone = dco_session::vanished(x.peers.keys().copied(), |id| {
                PeerId::new(id).map_err(|e| Error::failed(e.to_string())).and_then(|p| k.get_peer(ifindex, p))
            });
            for id in gone {
                x.peers.remove(&id);
                let ev = dco::PeerDeleted { ifindex, peer_id: id, reason: dco::DelReason::Teardown };
                log::info!("{path}: DCO peer {id} is gone (found by resync)");
                x.pipe.push(pipe::peer_deleted(family, &ev).to_vec());
            }
        }
    }
}
