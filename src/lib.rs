//! ovpn-netcfgd: the `net.openvpn.v3.netcfg` service as a small,
//! single-threaded daemon. See docs/architecture.md for the map.

pub mod apply;
pub mod bus;
pub mod config;
pub mod conn;
pub mod daemon;
pub mod dco;
pub mod dco_session;
pub mod device;
pub mod dns;
pub mod error;
pub mod events;
mod fuzz_smoke;
/// Fuzz entry points: only in test and fuzzing builds.
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz_wire;
pub mod journal;
pub mod limits;
pub mod logging;
pub mod netlink;
pub mod plan;
pub mod privs;
pub mod sessions;
pub mod settings;
pub mod shared;
pub mod state;
pub mod sys;
pub mod vecmap;
