//! The daemon's error type and its single mapping to D-Bus error names.
//!
//! Every module returns `Error`; `dbus_name()` is the only place where an
//! error becomes a name on the wire (see docs/differences.md for why these
//! names and not the reference's GLib "UnmappedGError" ones).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A method argument or property value was rejected; names the argument.
    InvalidArg(Box<(&'static str, String)>),
    /// The caller is not allowed to do this.
    AccessDenied(Box<str>),
    /// The object, property or subscription does not exist.
    NotFound(Box<str>),
    /// The property exists but cannot be written.
    ReadOnly(Box<str>),
    /// The request is valid but this build/host cannot do it.
    NotSupported(Box<str>),
    /// The kernel refused a netlink request.
    Kernel(Box<Sys>),
    /// A system call outside netlink failed (no `msg`).
    Io(Box<Sys>),
    /// The object is in a state where this call makes no sense.
    State(Box<str>),
    /// The host already routes something the call needs elsewhere.
    Conflict(Box<str>),
    /// The device object went away because someone else removed or
    /// renamed its link; says which and why.
    DeviceGone(Box<str>),
    /// Anything else, with a human-readable reason.
    Failed(Box<str>),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A constructor per message variant (`Error::failed(..)` for `Failed`),
/// taking a `String` or a `&str`: boxed strings keep `Error` at 24 bytes.
macro_rules! message_variants {
    ($($f:ident $v:ident),*) => { impl Error { $(pub fn $f(why: impl Into<Box<str>>) -> Self { Error::$v(why.into()) })* } };
}
message_variants!(access_denied AccessDenied, not_found NotFound, read_only ReadOnly, not_supported NotSupported,
    state State, conflict Conflict, device_gone DeviceGone, failed Failed);

/// What failed, its errno and any extack text: boxed in `Error`, which
/// every `Result` carries, so that it stays small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sys {
    pub op: String,
    pub errno: i32,
    pub msg: Option<String>,
}

impl Error {
    pub fn arg(arg: &'static str, why: impl Into<String>) -> Self {
        Error::InvalidArg(Box::new((arg, why.into())))
    }

    pub fn io(op: impl Into<String>, e: std::io::Error) -> Self {
        Error::Io(Box::new(Sys { op: op.into(), errno: e.raw_os_error().unwrap_or(libc::EIO), msg: None }))
    }

    pub fn errno(op: impl Into<String>, e: nix::errno::Errno) -> Self {
        Error::Io(Box::new(Sys { op: op.into(), errno: e as i32, msg: None }))
    }

    /// The errno of a kernel (netlink) refusal, 0 for any other error.
    pub fn kernel_errno(&self) -> i32 {
        let Error::Kernel(k) = self else { return 0 };
        k.errno
    }

    /// The D-Bus error name this error is sent under.
    pub fn dbus_name(&self) -> &'static str {
        match self {
            Error::InvalidArg(_) => "net.openvpn.v3.netcfg.error.InvalidArgs",
            Error::AccessDenied(_) => "net.openvpn.v3.netcfg.error.AccessDenied",
            Error::NotFound(_) => "net.openvpn.v3.netcfg.error.NotFound",
            Error::ReadOnly(_) => "org.freedesktop.DBus.Error.PropertyReadOnly",
            Error::NotSupported(_) => "net.openvpn.v3.netcfg.error.NotSupported",
            Error::Kernel(_) => "net.openvpn.v3.netcfg.error.Kernel",
            Error::Io(_) => "net.openvpn.v3.netcfg.error.System",
            Error::State(_) => "net.openvpn.v3.netcfg.error.State",
            Error::Conflict(_) => "net.openvpn.v3.netcfg.error.RouteConflict",
            Error::DeviceGone(_) => "net.openvpn.v3.netcfg.error.DeviceRemoved",
            Error::Failed(_) => "net.openvpn.v3.netcfg.error.Failed",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArg(a) => write!(f, "invalid argument '{}': {}", a.0, a.1),
            Error::AccessDenied(s)
            | Error::NotFound(s)
            | Error::ReadOnly(s)
            | Error::NotSupported(s)
            | Error::State(s)
            | Error::Conflict(s)
            | Error::DeviceGone(s)
            | Error::Failed(s) => f.write_str(s),
            Error::Kernel(s) | Error::Io(s) => {
                write!(f, "{}: {}", s.op, std::io::Error::from_raw_os_error(s.errno))?;
                s.msg.as_ref().map_or(Ok(()), |m| write!(f, " ({m})"))
            }
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    #[test]
    fn error_stays_small_as_every_result_carries_it() {
        // A tag and a boxed str: three words on every target.
        assert_eq!(std::mem::size_of::<super::Error>(), 3 * std::mem::size_of::<usize>());
    }
}
