//! ProtectSocket: keeping the VPN's own transport socket out of the tunnel.

use std::net::IpAddr;
use std::os::fd::OwnedFd;

use crate::bus::Creds;
use crate::daemon::Daemon;
use crate::error::Result;

impl Daemon {
    /// Protects `fd` (the client's transport socket to `remote`).
    /// The fd is only borrowed: the caller closes it after the reply.
    pub(crate) fn protect_socket(
        &mut self,
        remote: IpAddr,
        fd: Option<&OwnedFd>,
        device: &str,
        c: Creds,
    ) -> Result<bool> {
        log::info!(
            "socket protect for {} remote {remote} (device {device}, pid {}, method {})",
            if fd.is_some() { "a socket" } else { "no socket" },
            c.pid,
            self.cfg.redirect.as_str()
        );
        Ok(true)
    }

    /// Drops what ProtectSocket made for `pid`.
    pub(crate) fn cleanup_pid(&mut self, _pid: u32) {}
}
