//! ovpn-netcfgd: the `net.openvpn.v3.netcfg` service as a small,
//! single-threaded daemon. See docs/architecture.md for the map.

pub mod dco;
