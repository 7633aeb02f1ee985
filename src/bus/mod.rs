//! The object handlers (`manager`, `device`, `dco`, `props`, `introspect`)
//! of the D-Bus API; the connection they answer on is `crate::conn`.

pub mod dco;
pub mod device;
pub mod introspect;
pub mod manager;
pub mod props;
