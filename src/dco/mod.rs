//! Data channel offload: generic-netlink message builders and parsers for
//! the upstream `ovpn` family and the out-of-tree `ovpn-dco-v2` module.
