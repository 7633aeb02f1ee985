//! The GLib client (tests/demo/client.py) passes fds beside the message body
//! and reads Establish's fd from the reply's fd list, exactly as the
//! openvpn3 client's gdbuspp proxies do. The daemon must serve it.

mod common;

use std::io::Write;

use common::*;

#[test]
fn glib_client_session_works_and_cleans_up() {
    if !require_root() {
        return;
    }
    let env = Env::new("glib");
    let before = env.kernel_snapshot();
    let Some(GlibClient { mut child, mut out, dev, transcript }) = glib_client(&env) else { return };
    let addrs = env.ip(&format!("-o addr show dev {dev}"));
    assert!(addrs.contains("10.98.0.2/24") && addrs.contains("fd00:98::1000/64"), "{addrs}");
    let r = env.our_routes();
    assert!(r.contains(&format!("0.0.0.0/1 via 10.98.0.1 dev {dev}")), "{r}");
    assert!(r.contains("198.51.100.0/24 via 192.0.2.1 dev uplink0"), "{r}");
    child.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let st = child.wait().unwrap();
    assert!(st.success(), "client failed:\n{transcript}{rest}");
    assert!(rest.contains("NetworkChange DEVICE_REMOVED"), "{rest}");
    assert_eq!(env.kernel_snapshot(), before);
}
