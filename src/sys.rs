//! The only place with `unsafe` (each block has its SAFETY note): a few
//! system calls that neither `nix` nor `dbus` wrap.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

extern "C" {
    // Part of the libdbus built into this binary (libdbus-sys "vendored").
    // It is the only way to see file descriptors that a GLib client attached
    // to a message without naming them in the body (the reference's clients
    // do exactly that for ProtectSocket and NewPeer).
    fn _dbus_message_get_unix_fds(msg: *mut libc::c_void, fds: *mut *const libc::c_int, n: *mut libc::c_uint);
}

const _: () = assert!(std::mem::size_of::<dbus::Message>() == std::mem::size_of::<*mut libc::c_void>());

/// Duplicates every fd attached to a received message (CLOEXEC), in order.
pub fn message_fds(msg: &dbus::Message) -> Vec<OwnedFd> {
    // SAFETY: `dbus::Message` is a struct with a single field, the
    // `*mut DBusMessage` it owns (checked by the size assertion above), so
    // reading it as a pointer yields that field. The message came from
    // dbus_connection_pop_message, so it is locked, as
    // _dbus_message_get_unix_fds asserts; the returned array lives as long as
    // the message, which we borrow for the whole loop below.
    let (ptr, n) = unsafe {
        let raw: *mut libc::c_void = *(msg as *const dbus::Message as *const *mut libc::c_void);
        let mut fds: *const libc::c_int = std::ptr::null();
        let mut n: libc::c_uint = 0;
        _dbus_message_get_unix_fds(raw, &mut fds, &mut n);
        (fds, n as usize)
    };
    let fds = (0..n.min(16)).map(|i| {
        // SAFETY: i < n, the array has n entries (see above), and each fd is
        // open and owned by the message for this scope.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(*ptr.add(i)) }
    });
    // F_DUPFD_CLOEXEC: each copy is a new descriptor of our own.
    fds.filter_map(|fd| fd.try_clone_to_owned().ok()).collect()
}

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens a new tun (or tap) device; returns the fd and the kernel's name.
/// `name` empty lets the kernel pick `tunN`/`tapN`.
pub fn tun_open(tap: bool, name: &str) -> io::Result<(OwnedFd, String)> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    let fd = nix::fcntl::open("/dev/net/tun", OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK, Mode::empty())?;
    let flags = (libc::IFF_NO_PI | if tap { libc::IFF_TAP } else { libc::IFF_TUN }) as libc::c_short;
    let mut req = IfReq { name: [0; libc::IFNAMSIZ], flags, _pad: [0; 22] };
    for (d, s) in req.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`; IfReq has the
    // kernel's layout (16-byte name, short flags, padded to 40 bytes) and
    // lives on our stack for the duration of the call. The request number
    // comes from libc, which encodes it per architecture.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut req as *mut IfReq) })?;
    // SAFETY: the kernel NUL-terminates ifr_name (IFNAMSIZ includes the NUL).
    let kname = unsafe { CStr::from_ptr(req.name.as_ptr()) }.to_string_lossy().into_owned();
    Ok((fd, kname))
}

/// setsockopt with an int value, for options nix does not wrap.
pub fn setsockopt_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a pointer to a live c_int and its exact size.
    check(unsafe {
        libc::setsockopt(fd, level, opt, std::ptr::from_ref(&val).cast(), size_of_val(&val) as libc::socklen_t)
    })
    .map(drop)
}

/// A system call's return value: negative is the error in errno.
fn check<T: Into<i64>>(rc: T) -> io::Result<i64> {
    let rc = rc.into();
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Borrows a descriptor owned by a library (libdbus's socket) for one poll.
pub fn borrow_fd<'a>(fd: RawFd) -> std::os::fd::BorrowedFd<'a> {
    // SAFETY: callers pass the fd of a connection they hold for longer than
    // the borrow (the poll call); libdbus does not close it meanwhile because
    // nothing else runs on this thread during poll.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Whether the kernel started us in secure mode (setuid, setgid or file
/// capabilities: AT_SECURE), where the environment is the caller's to
/// forge. libdbus ignores its environment variables then; so do we.
pub fn secure_exec() -> bool {
    // SAFETY: getauxval reads the auxiliary vector the kernel gave the
    // process; it takes an integer and returns one (0 if the entry is absent).
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Capability numbers we use (include/uapi/linux/capability.h).
pub const CAP_DAC_OVERRIDE: u32 = 1;
pub const CAP_KILL: u32 = 5;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;

fn prctl(op: libc::c_int, arg: libc::c_ulong, arg2: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the prctl operations used here (CAPBSET_DROP, CAP_AMBIENT)
    // take plain integers and no pointers.
    check(unsafe { libc::prctl(op, arg, arg2, 0 as libc::c_ulong, 0 as libc::c_ulong) }).map(drop)
}

pub fn capbset_drop(cap: u32) -> io::Result<()> {
    prctl(libc::PR_CAPBSET_DROP, cap.into(), 0)
}

pub fn ambient_raise(cap: u32) -> io::Result<()> {
    prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong, cap.into())
}

pub fn ambient_clear_all() -> io::Result<()> {
    prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Sets this thread's effective and permitted sets to `caps`, and its
/// inheritable set to `inheritable` (what children may get; capability
/// numbers below 64).
pub fn capset(caps: &[u32], inheritable: &[u32]) -> io::Result<()> {
    let mask = |cs: &[u32]| cs.iter().filter(|&&c| c < 64).fold(0u64, |m, &c| m | 1 << c);
    let (caps, inheritable) = (mask(caps), mask(inheritable));
    let data = [0, 32].map(|shift| CapData {
        effective: (caps >> shift) as u32,
        permitted: (caps >> shift) as u32,
        inheritable: (inheritable >> shift) as u32,
    });
    // _LINUX_CAPABILITY_VERSION_3
    let mut hdr = CapHeader { version: 0x2008_0522, pid: 0 };
    // SAFETY: capset(2) with version 3 reads one header and two data
    // structs; both are repr(C), laid out as the kernel's, and live on our
    // stack for the call.
    check(unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) }).map(drop)
}

/// A descriptor for process `pid` (pidfd_open(2), Linux 5.3): it keeps
/// naming that process even if the pid is reused after it exits.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and a flags word, no pointers; on
    // success it returns a new descriptor that nobody else owns.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) })?;
    // SAFETY: see above: a fresh descriptor, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `sig` (0: only check that it still lives) to the process a pidfd
/// names (pidfd_send_signal(2)); the same permission rules as kill(2).
pub fn pidfd_send_signal(fd: &OwnedFd, sig: libc::c_int) -> io::Result<()> {
    let no_info = std::ptr::null::<libc::siginfo_t>();
    // SAFETY: the descriptor is open (borrowed for the call); a null
    // siginfo asks the kernel to fill in the usual kill(2) one; flags 0.
    check(unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), sig, no_info, 0 as libc::c_uint) })
        .map(drop)
}

/// A child process that sends, on a socket it shares with us, each
/// datagram we hand it (`Sender::send`), and exits when we close our end
/// of its channel, or when a send fails (with the errno as its exit code).
/// What the kernel does inside those sendmsg calls (a link deletion's RCU
/// wait of ~20 ms, route changes that wait for a grace period now and
/// then) then holds the child, not the loop. The answers come to the
/// shared socket.
pub struct Sender {
    /// None once reaped.
    pid: Option<nix::unistd::Pid>,
    /// Readable once it has exited (None on kernels before 5.3).
    pub pidfd: Option<OwnedFd>,
    /// Our end of a SOCK_SEQPACKET pair: one message per datagram.
    chan: Option<OwnedFd>,
}

/// The largest datagram a Sender takes (a batch of 128 RTNL requests fits):
/// its channel holds a whole one, so handing it over never blocks.
pub const SENDER_MAX: usize = 64 * 1024;

impl Sender {
    /// Forks the sender for socket `fd`.
    pub fn start(fd: RawFd) -> io::Result<Sender> {
        use nix::sys::socket::{setsockopt, socketpair, sockopt, AddressFamily, SockFlag, SockType};
        // Blocking: the child waits in recv; we hand over with MSG_DONTWAIT.
        let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)?;
        setsockopt(&ours, sockopt::SndBuf, &(4 * SENDER_MAX))?;
        // Allocated before the fork: the child allocates nothing.
        let mut buf = vec![0u8; SENDER_MAX];
        // SAFETY: the daemon has one thread, so no lock is held by another
        // thread at the fork. The child only calls close, recv, send and
        // _exit (all async-signal-safe) on descriptors and memory it
        // inherited; it runs no destructor and touches no other fd.
        match unsafe { nix::unistd::fork() }? {
            nix::unistd::ForkResult::Child => {
                let code = sender_loop(theirs.as_raw_fd(), ours.as_raw_fd(), fd, &mut buf);
                // SAFETY: ends the child at once: no atexit handler, no
                // flush of buffers that are the parent's.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                Ok(Sender { pid: Some(child), pidfd: pidfd_open(child.as_raw() as u32).ok(), chan: Some(ours) })
            }
        }
    }

    /// Hands one datagram to the sender (never blocks).
    pub fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let chan = self.chan.as_ref().ok_or_else(|| io::Error::from_raw_os_error(libc::EPIPE))?;
        let flags = nix::sys::socket::MsgFlags::MSG_DONTWAIT | nix::sys::socket::MsgFlags::MSG_NOSIGNAL;
        nix::sys::socket::send(chan.as_raw_fd(), bytes, flags)?;
        Ok(())
    }

    /// Reaps the sender if it has exited (`block`: waits for it): None
    /// while it runs, then Ok, or the errno of the send it failed.
    pub fn reap(&mut self, block: bool) -> Option<io::Result<()>> {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        let flags = (!block).then_some(WaitPidFlag::WNOHANG);
        let pid = self.pid?;
        let r = loop {
            match waitpid(pid, flags) {
                Ok(WaitStatus::StillAlive) => return None,
                Ok(WaitStatus::Exited(_, 0)) => break Ok(()),
                Ok(WaitStatus::Exited(_, code)) => break Err(io::Error::from_raw_os_error(code)),
                Ok(_) => break Err(io::Error::other("the netlink sender was killed")),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => break Err(e.into()),
            }
        };
        self.pid = None;
        Some(r)
    }
}

impl Drop for Sender {
    /// Closes our end, so the sender exits once it has sent what it holds,
    /// and reaps it: never a zombie. At the end of an operation it is idle
    /// (its last datagram was answered), so this waits only for it to see
    /// the end of its channel.
    fn drop(&mut self) {
        self.chan = None;
        let _ = self.reap(true);
    }
}

/// The sender's loop (in the child): each message read from `rx` is sent
/// on `sock` as one datagram. Returns its exit code: 0 once the channel
/// ends, else the errno that stopped it.
fn sender_loop(rx: RawFd, ours: RawFd, sock: RawFd, buf: &mut [u8]) -> i32 {
    // SAFETY: `ours` is this process's copy of the parent's end, which
    // nothing here uses; closed, the channel ends when the parent closes it.
    unsafe { libc::close(ours) };
    loop {
        // SAFETY: `buf` is live, writable memory of `buf.len()` bytes for
        // the call; `rx` is our end of the pair.
        let n = unsafe { libc::recv(rx, buf.as_mut_ptr().cast(), buf.len(), 0) };
        match n {
            0 => return 0,
            n if n > 0 => {}
            _ if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => continue,
            _ => return errno(),
        }
        loop {
            // SAFETY: `buf[..n]` was just filled; `sock` is the inherited
            // socket; flags 0.
            if unsafe { libc::send(sock, buf.as_ptr().cast(), n as usize, 0) } >= 0 {
                break;
            }
            if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return errno();
            }
        }
    }
}

/// The current errno as an exit code (1..=255).
fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(255).clamp(1, 255)
}

/// Bytes queued on stream socket `fd`: written by us and not yet read by
/// its peer (`outgoing`: SIOCOUTQ, which is TIOCOUTQ's number), or there
/// for us to read (SIOCINQ, which is FIONREAD's).
pub fn queued_bytes(fd: RawFd, outgoing: bool) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    let req = if outgoing { libc::TIOCOUTQ } else { libc::FIONREAD };
    // SAFETY: both requests write one int to the pointer, which points at
    // `n` on our stack for the call.
    check(unsafe { libc::ioctl(fd, req, &mut n as *mut libc::c_int) })?;
    Ok(n.max(0) as usize)
}

/// Overwrites `buf` with zeroes, for key material. Every store is volatile,
/// so the optimiser cannot drop them as dead even when `buf` is freed next.
pub fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: the pointer comes from a live `&mut u8`, so it is non-null,
        // aligned, valid for a one-byte write and not aliased for the
        // duration of the write; every bit pattern is a valid u8.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    // Volatile stores are ordered only among volatile accesses; the fence
    // also keeps the free that usually follows from being moved above them.
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Gives freed heap memory back to the system (a 10k-route session leaves
/// several MiB on glibc's free lists otherwise).
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own allocator state; we have
    // one thread, so nothing allocates concurrently.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn wipe_zeroes_every_byte() {
        let mut b: Vec<u8> = (1..=200).collect();
        super::wipe(&mut b[3..]);
        assert_eq!(&b[..3], &[1, 2, 3]);
        assert!(b[3..].iter().all(|&x| x == 0));
        super::wipe(&mut []);
    }
}
