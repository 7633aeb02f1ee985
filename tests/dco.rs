//! Data channel offload against the real kernel modules, inside the qemu
//! guests of tests/dco-vm (run them with tests/dco-vm/run-tests.sh, which
//! boots both: Debian's 6.12 with ovpn-dco-v2, and trixie-backports' 7.x
//! with the upstream ovpn module). The tests follow the family the guest
//! has: peer lookups by id, the records each family writes, and the MP
//! dump where the family has one.
//! Outside the guest, or without the module, each test prints SKIP and
//! returns; with DCO_TEST_REQUIRE=1 (set by run-tests.sh) that is a failure.
//! On the host they only ever skip, even under OVPN_NETCFGD_NO_SKIP: `make
//! test` runs them in the guest (`make test-dco`).
//!
//! Every step is checked in the kernel: GET_PEER through the crate's own
//! genl code from the test's side, `ip -d link`, packet counters, and
//! /proc/<daemon>/fd for the transport sockets the daemon must keep.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::*;
use dbus::blocking::Connection;
use dbus::Message;
use ovpn_netcfgd::dco::{sockaddr, Family, PeerId, PeerInfo, Request};
use ovpn_netcfgd::dco_session::DcoKernel;

/// True when this runs in the rig's guest with a DCO module; otherwise
/// prints why it skips (or panics when run-tests.sh demands the guest).
fn guest() -> bool {
    let required = std::env::var("DCO_TEST_REQUIRE").as_deref() == Ok("1");
    let in_guest = std::env::var("DCO_VM_GUEST").as_deref() == Ok("1");
    let why = if !in_guest {
        "not in the DCO guest (run tests/dco-vm/run-tests.sh)"
    } else if !std::path::Path::new("/sys/module/ovpn_dco_v2").exists()
        && !std::path::Path::new("/sys/module/ovpn").exists()
    {
        "no ovpn or ovpn-dco-v2 module loaded"
    } else if !has_root_and_tun() {
        "needs root and /dev/net/tun"
    } else {
        return true;
    };
    assert!(!required, "DCO_TEST_REQUIRE=1 but {why}");
    if in_guest {
        skip(why);
    } else {
        note_skip(why);
    }
    false
}

/// Runs `f` on a thread inside network namespace `ns`. Sockets it creates
/// stay in that namespace whichever thread uses them later.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// Two UDP sockets on loopback, connected to each other.
fn udp_pair() -> (UdpSocket, UdpSocket) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.connect(b.local_addr().unwrap()).unwrap();
    b.connect(a.local_addr().unwrap()).unwrap();
    (a, b)
}

fn dco_path(p: &str) -> String {
    format!("{p}/dco")
}

fn enable(c: &Connection, p: &str, name: &str) -> String {
    let (d,): (dbus::Path<'static>,) = call(c, p, "EnableDCO", (name,)).expect("EnableDCO");
    d.to_string()
}

fn new_peer_msg(p: &str, id: u32, remote: SocketAddr, vpn4: &str, vpn6: &str, fd: Option<OwnedFd>) -> Message {
    let raw = sockaddr::to_raw(&remote);
    let m = method(&dco_path(p), "NewPeer").append3(id, b64(&raw), raw.len() as u32).append2(vpn4, vpn6);
    match fd {
        Some(fd) => m.append1(fd),
        None => m,
    }
}

fn sock_fd(s: &UdpSocket) -> OwnedFd {
    OwnedFd::from(s.try_clone().unwrap())
}

/// Canonical padded base64, as the client sends it (the crate's encoder is
/// built only for its unit tests and fuzzing).
fn b64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            let sym = ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize];
            s.push(if i <= chunk.len() { char::from(sym) } else { '=' });
        }
    }
    s
}

/// A base64 DcoKeyConfig protobuf as the client builds it: key_id,
/// remote_peer_id, cipher_alg, then the encrypt and decrypt KeyDirection
/// {cipher_key, nonce_tail, cipher_key_size}.
fn key_config(key_id: i32, peer: i32, alg: u32, enc: (&[u8], &[u8]), dec: (&[u8], &[u8])) -> String {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
    let mut out = Vec::new();
    // int32 negatives are sign-extended to 64 bits on the wire.
    for (field, v) in [(1, key_id as i64 as u64), (2, peer as i64 as u64), (3, u64::from(alg))] {
        varint(&mut out, field << 3);
        varint(&mut out, v);
    }
    for (field, (k, t)) in [(4, enc), (5, dec)] {
        let mut dir = Vec::new();
        bytes(&mut dir, 1, k);
        bytes(&mut dir, 3, t);
        varint(&mut dir, 4 << 3);
        varint(&mut dir, k.len() as u64);
        bytes(&mut out, field, &dir);
    }
    b64(&out)
}

fn get_peer(k: &mut DcoKernel, ifindex: u32, id: u32) -> Option<PeerInfo> {
    k.get_peer(ifindex, PeerId::new(id).unwrap()).expect("GET_PEER")
}

/// Polls `f` for up to `secs` seconds.
fn wait_until<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(secs), "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Socket inodes the daemon process holds open.
fn daemon_sockets(env: &Env) -> Vec<u64> {
    let pid = env.daemon.as_ref().unwrap().id();
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        if let Ok(t) = std::fs::read_link(e.path()) {
            let t = t.to_string_lossy().into_owned();
            if let Some(n) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                out.push(n.parse().unwrap());
            }
        }
    }
    out
}

fn inode(s: &UdpSocket) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd())).unwrap().ino()
}

/// One record from the pipe, waiting up to `secs`.
fn read_pipe(fd: &OwnedFd, secs: u64) -> Option<Vec<u8>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        let mut p = [PollFd::new(std::os::fd::AsFd::as_fd(fd), PollFlags::POLLIN)];
        if poll(&mut p, PollTimeout::from(200u16)).unwrap_or(0) > 0 {
            let mut b = [0u8; 2048];
            let n = nix::sys::socket::recv(fd.as_raw_fd(), &mut b, nix::sys::socket::MsgFlags::MSG_DONTWAIT).unwrap();
            return Some(b[..n].to_vec());
        }
    }
    None
}

fn get_pipe(c: &Connection, p: &str) -> OwnedFd {
    let r = send(c, method(&dco_path(p), "GetPipeFD")).expect("GetPipeFD");
    r.read1::<OwnedFd>().expect("GetPipeFD returns an fd")
}

fn err_of<T: std::fmt::Debug>(r: Result<T, (String, String)>) -> (String, String) {
    r.expect_err("the call should fail")
}

fn peer_deleted_record(fam: Family, id: u32, reason: u8) -> Vec<u8> {
    let mut r = vec![fam.layout().peer_deleted.cmd]; // 3 in ovpn-dco-v2, 5 upstream
    r.extend_from_slice(&id.to_ne_bytes());
    r.push(reason);
    r
}

/// The family of the module the guest loaded (run-in-vm.sh says which).
fn guest_family() -> Family {
    match std::env::var("DCO_VM_FAMILY").as_deref() {
        Ok("ovpn") => Family::Ovpn,
        _ if std::path::Path::new("/sys/module/ovpn").exists() => Family::Ovpn,
        _ => Family::OvpnDcoV2,
    }
}

/// Whether any link of the family's kind is left (`ip -d` names the kind
/// on its own line).
fn has_link_of_kind(env: &Env, fam: Family) -> bool {
    let kind = format!(" {} ", fam.layout().link_kind);
    env.ip("-d link show").lines().any(|l| format!("{} ", l).contains(&kind))
}

/// The family the daemon uses, from its `dco_family` property.
fn family(c: &Connection) -> Family {
    match get_prop::<String>(c, MGR, "dco_family").as_str() {
        "ovpn" => Family::Ovpn,
        "ovpn-dco-v2" => Family::OvpnDcoV2,
        other => panic!("unexpected dco_family {other:?}"),
    }
}

/// A GetPeer record (command byte, then the client's `OvpnDcoPeer`)
/// against the kernel's own answer read just after it: addresses, ports
/// and keepalive equal, counters no larger than the kernel's later ones.
fn check_peer_record(rec: &[u8], fam: Family, now: &PeerInfo, remote: SocketAddr, vpn4: [u8; 4], ka: (u32, u32)) {
    assert_eq!((rec.len(), rec[0]), (217, fam.layout().cmds[2]), "{rec:?}");
    let u32_at = |i: usize| u32::from_ne_bytes(rec[i..i + 4].try_into().unwrap());
    let u64_at = |i: usize| u64::from_ne_bytes(rec[i..i + 8].try_into().unwrap());
    assert_eq!(u32_at(1), now.id);
    assert_eq!(rec[5..9], vpn4);
    assert_eq!(rec[25..27], now.local_port.expect("local port").to_be_bytes());
    let raw = sockaddr::to_raw(&remote);
    assert_eq!(rec[33..33 + raw.len()], raw[..]);
    assert_eq!((u32_at(161), u32_at(165)), ka);
    for (at, c) in [(169, &now.vpn), (193, &now.link)] {
        let (rb, tb, rp, tp) = (u64_at(at), u64_at(at + 8), u32_at(at + 16), u32_at(at + 20));
        assert!(rb <= c.rx_bytes && tb <= c.tx_bytes, "bytes {rb}/{tb} vs {c:?}");
        assert!(u64::from(rp) <= c.rx_packets && u64::from(tp) <= c.tx_packets, "packets {rp}/{tp} vs {c:?}");
    }
}

const K_A: [u8; 32] = [0x11; 32];
const K_B: [u8; 32] = [0x22; 32];
const K_C: [u8; 32] = [0x33; 32];
const K_D: [u8; 32] = [0x44; 32];
const T_A: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
const T_B: [u8; 8] = [8, 7, 6, 5, 4, 3, 2, 1];

/// Two DCO devices of the daemon, A and B, whose peers are each other
/// over loopback UDP; traffic into A's tunnel comes out decrypted at B.
#[test]
fn lifecycle_end_to_end() {
    if !guest() {
        return;
    }
    let env = Env::new("dco");
    let c = env.conn();
    let t0 = Instant::now();

    // --- detection
    let (avail,): (bool,) = call(&c, MGR, "DcoAvailable", ()).unwrap();
    assert!(avail);
    let fam = guest_family();
    assert_eq!(family(&c), fam, "the daemon uses the guest's only module");
    println!("family {fam}, kernel {}", sh("uname -r").trim());

    let (mut k, (sa, sb), sender) =
        in_ns(&env.ns, || (DcoKernel::probe().expect("family"), udp_pair(), UdpSocket::bind("0.0.0.0:0").unwrap()));
    let (addr_a, addr_b) = (sa.local_addr().unwrap(), sb.local_addr().unwrap());

    // --- EnableDCO
    let pa = create(&c, "dcoa");
    let pb = create(&c, "dcob");
    assert_eq!(enable(&c, &pa, "ovpnA"), dco_path(&pa));
    assert_eq!(enable(&c, &pb, "ovpnB"), dco_path(&pb));
    let link = env.ip("-d link show ovpnA");
    println!("after EnableDCO: {}", link.trim());
    assert!(has_link_of_kind(&env, fam), "kind {}: {link}", fam.layout().link_kind);
    let (name, msg) = err_of(call::<_, (dbus::Path<'static>,)>(&c, &pa, "EnableDCO", ("ovpnA2",)));
    assert!(name.ends_with(".State") && msg.contains("already enabled"), "{name}: {msg}");
    assert_eq!(get_prop::<String>(&c, &pa, "device_name"), "ovpnA");
    let (xml,): (String,) = c
        .with_proxy(DEST, &pa, Duration::from_secs(5))
        .method_call("org.freedesktop.DBus.Introspectable", "Introspect", ())
        .unwrap();
    assert!(xml.contains("<node name=\"dco\"/>"));
    let (ia, ib) = (env.ifindex("ovpnA"), env.ifindex("ovpnB"));
    let pipe_a = get_pipe(&c, &pa);
    let pipe_b = get_pipe(&c, &pb);
    let (name, _) = err_of(send(&c, method(&dco_path(&pa), "GetPipeFD")));
    assert!(name.ends_with(".State"), "second GetPipeFD: {name}");

    // --- NewPeer: the fd rides along as 'h'; the daemon keeps it open
    send(&c, new_peer_msg(&pa, 1, addr_b, "10.8.0.2", "::", Some(sock_fd(&sa)))).expect("NewPeer A");
    send(&c, new_peer_msg(&pb, 1, addr_a, "", "", Some(sock_fd(&sb)))).expect("NewPeer B");
    let peer_a = get_peer(&mut k, ia, 1).expect("peer 1 on A");
    println!("after NewPeer: A peer {:?}", peer_a);
    assert_eq!(peer_a.remote, Some(addr_b));
    // Upstream P2P peers carry no VPN address (the daemon drops the client's).
    let vpn4_a = match fam {
        Family::OvpnDcoV2 => [10, 8, 0, 2],
        Family::Ovpn => [0; 4],
    };
    assert_eq!(peer_a.vpn4.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED).octets(), vpn4_a);
    assert_eq!(get_peer(&mut k, ib, 1).unwrap().remote, Some(addr_a));
    let held = daemon_sockets(&env);
    assert!(held.contains(&inode(&sa)) && held.contains(&inode(&sb)), "the daemon keeps both transport sockets");
    // The v2 module's dump walks only its MP peer table, so a P2P device's
    // peer is missing from it (see peer_dump_lists_mp_peers): the daemon's
    // resync therefore asks for each peer with the doit. Upstream's dump
    // lists the P2P peer too.
    let dump = k.dump_peers(ia).expect("PEER_GET dump");
    match fam {
        Family::OvpnDcoV2 => assert_eq!(dump, vec![]),
        Family::Ovpn => assert_eq!(dump, vec![peer_a.clone()]),
    }

    // --- Establish on a DCO device: configures the netdev, returns no fd
    for (p, ip) in [(&pa, "10.8.0.1"), (&pb, "10.9.0.1")] {
        set_prop(&c, p, "layer", 3u32).unwrap();
        set_prop(&c, p, "mtu", 1400u16).unwrap();
        let _: () = call(&c, p, "AddIPAddress", (ip, 24u32, "", false)).unwrap();
        let r = send(&c, method(p, "Establish")).expect("Establish");
        assert!(r.get1::<OwnedFd>().is_none(), "a DCO Establish returns no fd");
    }
    let show = env.ip("addr show dev ovpnA");
    println!("after Establish: {}", show.lines().take(3).collect::<Vec<_>>().join(" | "));
    assert!(show.contains("inet 10.8.0.1/24") && show.contains("mtu 1400") && show.contains(",UP"), "{show}");
    assert_eq!(get_prop::<String>(&c, &pa, "device_name"), "ovpnA");

    // A packet into A's tunnel; the counters say how far it got.
    let probe = |k: &mut DcoKernel| -> (u64, u64) {
        let before = get_peer(k, ib, 1).unwrap();
        sender.send_to(b"ping", "10.8.0.77:9").unwrap();
        // B's transport saw it (link rx), then decryption did or did not count it (vpn rx).
        let after = wait_until(10, "the packet at B", || {
            let p = get_peer(k, ib, 1).unwrap();
            (p.link.rx_packets > before.link.rx_packets).then_some(p)
        });
        std::thread::sleep(Duration::from_millis(300)); // decryption runs in a workqueue
        let after = get_peer(k, ib, 1).map(|p| p.vpn.rx_packets).unwrap_or(after.vpn.rx_packets);
        (before.vpn.rx_packets, after)
    };

    // --- NewKey AES-256-GCM, primary, key id 0, on both ends
    let ka = key_config(0, 1, 1, (&K_A, &T_A), (&K_B, &T_B));
    let kb = key_config(0, 1, 1, (&K_B, &T_B), (&K_A, &T_A));
    let _: () = call(&c, &dco_path(&pa), "NewKey", (0u32, ka.as_str())).expect("NewKey A");
    let _: () = call(&c, &dco_path(&pb), "NewKey", (0u32, kb.as_str())).expect("NewKey B");
    let (b0, b1) = probe(&mut k);
    println!("AES-GCM: B decrypted {} -> {} packets", b0, b1);
    assert_eq!(b1, b0 + 1, "an AES-GCM packet from A decrypts at B");
    assert!(get_peer(&mut k, ia, 1).unwrap().vpn.tx_packets >= 1, "A encrypted it (it has a primary key)");

    // --- NewKey ChaCha20-Poly1305 as secondary (key id 1), then SwapKeys
    let ka = key_config(1, 1, 2, (&K_C, &T_B), (&K_D, &T_A));
    let kb = key_config(1, 1, 2, (&K_D, &T_A), (&K_C, &T_B));
    let _: () = call(&c, &dco_path(&pa), "NewKey", (1u32, ka.as_str())).expect("NewKey A secondary");
    let _: () = call(&c, &dco_path(&pb), "NewKey", (1u32, kb.as_str())).expect("NewKey B secondary");
    let _: () = call(&c, &dco_path(&pa), "SwapKeys", (1u32,)).expect("SwapKeys A");
    let _: () = call(&c, &dco_path(&pb), "SwapKeys", (1u32,)).expect("SwapKeys B");
    // B's AES key (now its secondary) goes: only ChaCha (key id 1) can still decrypt.
    k.request(
        ib,
        &Request::KeyDel { peer: PeerId::new(1).unwrap(), slot: ovpn_netcfgd::dco::KeySlot::Secondary },
        "DEL_KEY",
    )
    .expect("DEL_KEY on B");
    let (b0, b1) = probe(&mut k);
    println!("after SwapKeys (ChaCha20-Poly1305 primary): B decrypted {} -> {} packets", b0, b1);
    assert_eq!(b1, b0 + 1, "A now encrypts with ChaCha20-Poly1305, key id 1");
    // Swap A back to AES: B has no key id 0 any more, so nothing decrypts.
    let _: () = call(&c, &dco_path(&pa), "SwapKeys", (1u32,)).expect("SwapKeys A again");
    let (b0, b1) = probe(&mut k);
    println!("after a second SwapKeys on A (AES primary, unknown to B): B decrypted {} -> {}", b0, b1);
    assert_eq!(b1, b0, "the swap really switched A back to key id 0");

    // --- SetPeer: keepalive as the kernel reports it
    let _: () = call(&c, &dco_path(&pa), "SetPeer", (1u32, 1u32, 3u32)).expect("SetPeer A");
    let pa_info = get_peer(&mut k, ia, 1).unwrap();
    println!("after SetPeer: keepalive {:?}/{:?}", pa_info.keepalive_interval, pa_info.keepalive_timeout);
    assert_eq!((pa_info.keepalive_interval, pa_info.keepalive_timeout), (Some(1), Some(3)));

    // --- GetPeer: an empty reply; the answer is a record on the pipe, as
    // the packaged netcfg writes it (the client reads its counters there).
    let _: () = call(&c, &dco_path(&pa), "GetPeer", (1u32,)).expect("GetPeer A");
    let rec = read_pipe(&pipe_a, 5).expect("GetPeer's record on the pipe");
    let now = get_peer(&mut k, ia, 1).unwrap();
    println!("GetPeer record: {} bytes, command {}", rec.len(), rec[0]);
    check_peer_record(&rec, fam, &now, addr_b, vpn4_a, (1, 3));
    assert!(u32::from_ne_bytes(rec[189..193].try_into().unwrap()) >= 1, "A's tunnel has sent packets");

    // --- Peer deleted by userspace (this test) on B: reason 1 on B's pipe
    k.request(ib, &Request::PeerDel(PeerId::new(1).unwrap()), "DEL_PEER").expect("DEL_PEER on B");
    assert_eq!(read_pipe(&pipe_b, 10), Some(peer_deleted_record(fam, 1, 1)), "B's pipe: peer 1, USERSPACE");
    // --- Keepalive expiry on A (B never answers): reason 2 on A's pipe
    assert_eq!(read_pipe(&pipe_a, 20), Some(peer_deleted_record(fam, 1, 2)), "A's pipe: peer 1, EXPIRED");
    assert!(get_peer(&mut k, ia, 1).is_none() && get_peer(&mut k, ib, 1).is_none());
    // The daemon lets go of the sockets of peers the kernel no longer has.
    wait_until(5, "the daemon to close the transport sockets", || {
        let held = daemon_sockets(&env);
        (!held.contains(&inode(&sa)) && !held.contains(&inode(&sb))).then_some(())
    });

    // --- Destroy: netdevs, addresses and routes are gone
    for p in [&pa, &pb] {
        let _: () = call(&c, p, "Destroy", ()).unwrap();
    }
    let links = env.ip("-d link show");
    println!("after Destroy: links {:?}", env.extra_links());
    assert!(!has_link_of_kind(&env, fam), "{links}");
    assert!(env.our_routes().is_empty());
    assert!(ping(&c));
    println!("lifecycle: {:.1} s in the guest", t0.elapsed().as_secs_f64());
}

/// Every DCO method refuses bad input with a clear error, and the daemon
/// stays up; commands for peers the device does not hold are refused
/// before the kernel sees them; refusals also reach the pipe as 0xFF records.
#[test]
fn bad_input() {
    if !guest() {
        return;
    }
    let env = Env::new("dcobad");
    let c = env.conn();
    let p = create(&c, "bad");
    let d = dco_path(&p);
    let expect = |r: Result<Message, (String, String)>, name_end: &str, text: &str| {
        let (name, msg) = err_of(r);
        println!("  {name}: {msg}");
        assert!(name.ends_with(name_end), "{name}: {msg} (wanted ..{name_end})");
        assert!(msg.contains(text), "{name}: {msg} (wanted '{text}')");
        assert!(ping(&c), "the daemon died");
    };
    let m = |member: &str| method(&d, member);

    // No /dco object before EnableDCO; bad names.
    expect(send(&c, m("GetPipeFD")), "UnknownObject", "");
    expect(send(&c, method(&p, "EnableDCO").append1("bad name")), "InvalidArgs", "dev_name");
    expect(send(&c, method(&p, "EnableDCO").append1("x".repeat(16))), "InvalidArgs", "dev_name");
    enable(&c, &p, "ovpnbad");
    // An existing interface name: the kernel's refusal, clearly worded.
    let q = create(&c, "dup");
    expect(send(&c, method(&q, "EnableDCO").append1("ovpnbad")), "Kernel", "File exists");
    let pipe = get_pipe(&c, &p);

    let (s, peer_sock) = in_ns(&env.ns, udp_pair);
    let remote = peer_sock.local_addr().unwrap();
    let raw = sockaddr::to_raw(&remote);
    let sa = b64(&raw);
    // NewPeer
    expect(send(&c, new_peer_msg(&p, 1, remote, "", "", None)), "InvalidArgs", "fd");
    expect(
        send(&c, m("NewPeer").append3(1u32, "***", 16u32).append2("", "").append1(sock_fd(&s))),
        "InvalidArgs",
        "sa",
    );
    expect(
        send(&c, m("NewPeer").append3(1u32, sa.as_str(), 28u32).append2("", "").append1(sock_fd(&s))),
        "InvalidArgs",
        "sa",
    );
    expect(send(&c, new_peer_msg(&p, 1 << 24, remote, "", "", Some(sock_fd(&s)))), "InvalidArgs", "peer_id");
    expect(send(&c, new_peer_msg(&p, 1, remote, "10.8.0.300", "", Some(sock_fd(&s)))), "InvalidArgs", "vpn4");
    let file = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    expect(send(&c, new_peer_msg(&p, 1, remote, "", "", Some(file))), "InvalidArgs", "not a socket");
    expect(send(&c, m("NewPeer").append3("1", sa.as_str(), 16u32)), "InvalidArgs", "signature");
    // NewKey and friends for a peer the device does not hold: the daemon
    // refuses them before the kernel sees them; each refusal reaches the pipe.
    let mut k = in_ns(&env.ns, || DcoKernel::probe().expect("family"));
    let ifindex = env.ifindex("ovpnbad");
    let pipe_error = |want: &str| {
        let rec = read_pipe(&pipe, 5).expect("the refusal reaches the pipe");
        println!("  pipe: {:?}", String::from_utf8_lossy(&rec));
        assert_eq!(rec[0], 0xff);
        assert!(String::from_utf8_lossy(&rec[1..]).contains(want), "{want}");
    };
    let good = key_config(0, 1, 1, (&K_A, &T_A), (&K_B, &T_B));
    expect(send(&c, m("NewKey").append2(0u32, good.as_str())), "InvalidArgs", "'key_config': no peer 1 on ovpnbad");
    pipe_error("no peer 1 on ovpnbad");
    expect(send(&c, m("SwapKeys").append1(7u32)), "InvalidArgs", "'peer_id': no peer 7 on ovpnbad");
    pipe_error("no peer 7");
    expect(send(&c, m("SetPeer").append3(7u32, 10u32, 60u32)), "InvalidArgs", "'peer_id': no peer 7 on ovpnbad");
    pipe_error("no peer 7");
    expect(send(&c, m("GetPeer").append1(7u32)), "InvalidArgs", "'peer_id': no peer 7 on ovpnbad");
    pipe_error("no peer 7");
    expect(send(&c, m("GetPeer").append1("7")), "InvalidArgs", "signature");
    // The kernel still has no peer.
    assert!(get_peer(&mut k, ifindex, 1).is_none() && get_peer(&mut k, ifindex, 7).is_none());
    // A real peer, then bad keys for it.
    send(&c, new_peer_msg(&p, 1, remote, "", "", Some(sock_fd(&s)))).expect("NewPeer");
    let held = get_peer(&mut k, ifindex, 1).expect("peer 1 in the kernel");
    assert_eq!(held.remote, Some(remote));
    expect(send(&c, m("NewKey").append2(0u32, "not base64!")), "InvalidArgs", "key_config");
    let short = key_config(0, 1, 1, (&K_A[..20], &T_A), (&K_B[..20], &T_B));
    expect(send(&c, m("NewKey").append2(0u32, short.as_str())), "InvalidArgs", "20-byte key invalid for AES-GCM");
    let chacha16 = key_config(0, 1, 2, (&K_A[..16], &T_A), (&K_B[..16], &T_B));
    expect(send(&c, m("NewKey").append2(0u32, chacha16.as_str())), "InvalidArgs", "ChaCha20-Poly1305");
    let tail4 = key_config(0, 1, 1, (&K_A, &T_A[..4]), (&K_B, &T_B));
    expect(send(&c, m("NewKey").append2(0u32, tail4.as_str())), "InvalidArgs", "nonce tail");
    expect(send(&c, m("NewKey").append2(2u32, good.as_str())), "InvalidArgs", "key_slot");
    let other_peer = key_config(0, 9, 1, (&K_A, &T_A), (&K_B, &T_B));
    expect(send(&c, m("NewKey").append2(0u32, other_peer.as_str())), "InvalidArgs", "no peer 9 on ovpnbad");
    pipe_error("no peer 9");
    assert!(get_peer(&mut k, ifindex, 9).is_none());
    assert_eq!(get_peer(&mut k, ifindex, 1), Some(held), "peer 1 is unchanged in the kernel");
    expect(send(&c, m("SwapKeys").append1(1u32 << 24)), "InvalidArgs", "peer_id");
    expect(send(&c, m("Bogus")), "UnknownMethod", "");
    // The good key still goes in afterwards.
    let _: () = call(&c, &d, "NewKey", (0u32, good.as_str())).expect("NewKey");
    // A refusal by the kernel itself: the transport socket already belongs
    // to ovpnbad, so the module will not give it to a second device.
    let p2 = create(&c, "bad2");
    enable(&c, &p2, "ovpnbad2");
    let pipe2 = get_pipe(&c, &p2);
    expect(send(&c, new_peer_msg(&p2, 1, remote, "", "", Some(sock_fd(&s)))), "Kernel", "NEW_PEER 1");
    let rec = read_pipe(&pipe2, 5).expect("the kernel error reaches the pipe");
    println!("  pipe: {:?}", String::from_utf8_lossy(&rec));
    assert_eq!(rec[0], 0xff);
    assert!(String::from_utf8_lossy(&rec[1..]).contains("NEW_PEER 1"));
    for p in [&p, &p2] {
        let _: () = call(&c, p, "Destroy", ()).unwrap();
    }
    assert!(!has_link_of_kind(&env, guest_family()));
}

/// The PEER_GET dump against the real module: it lists an MP device's
/// peers, parsed like the doit's reply, and never a P2P device's peer.
/// The daemon only makes P2P devices, so the test makes the MP one itself
/// with the crate's own RTNL and genl code.
#[test]
fn peer_dump_lists_mp_peers() {
    if !guest() {
        return;
    }
    use ovpn_netcfgd::dco::{Mode, PeerNew, Transport};
    let env = Env::new("dcodump");
    let fam = guest_family();
    let (mut k, (s, peer), s2) = in_ns(&env.ns, || {
        let mut rtnl = ovpn_netcfgd::netlink::Socket::open().expect("rtnl");
        rtnl.request(ovpn_netcfgd::dco_session::newlink_request(fam, "ovpnmp", Mode::Mp))
            .expect("create an MP DCO device");
        (DcoKernel::probe().expect("family"), udp_pair(), UdpSocket::bind("127.0.0.1:0").unwrap())
    });
    let ifindex = env.ifindex("ovpnmp");
    assert_eq!(k.dump_peers(ifindex).expect("dump of an empty device"), vec![]);
    let remote = peer.local_addr().unwrap();
    for (id, sock, vpn) in [(3u32, &s, "10.8.0.3"), (4, &s2, "10.8.0.4")] {
        let p = PeerNew::new(
            fam,
            Mode::Mp,
            PeerId::new(id).unwrap(),
            sock.as_raw_fd(),
            Transport::Udp(remote),
            Some(vpn.parse().unwrap()),
            None,
        )
        .unwrap();
        k.request(ifindex, &Request::PeerNew(&p), "NEW_PEER").expect("NEW_PEER on the MP device");
    }
    let mut dump = k.dump_peers(ifindex).expect("PEER_GET dump");
    dump.sort_by_key(|p| p.id);
    println!("MP dump: {dump:?}");
    assert_eq!(dump.iter().map(|p| p.id).collect::<Vec<_>>(), [3, 4]);
    for p in &dump {
        assert_eq!(Some(p), get_peer(&mut k, ifindex, p.id).as_ref(), "dump and doit agree on peer {}", p.id);
        assert_eq!(p.remote, Some(remote));
    }
    assert_eq!(dump[1].vpn4, Some("10.8.0.4".parse().unwrap()));
    k.request(ifindex, &Request::PeerDel(PeerId::new(3).unwrap()), "DEL_PEER").expect("DEL_PEER");
    assert_eq!(k.dump_peers(ifindex).unwrap().iter().map(|p| p.id).collect::<Vec<_>>(), [4]);
    env.ip("link del ovpnmp");
}

/// The netdev goes with the client (bus name lost), with the daemon
/// (SIGTERM), and after a crash (journal recovery at the next start).
#[test]
fn cleanup_on_client_death_shutdown_and_crash() {
    if !guest() {
        return;
    }
    let mut env = Env::new("dcoclean");
    let (s, peer) = in_ns(&env.ns, udp_pair);
    let remote = peer.local_addr().unwrap();
    let gone = |env: &Env, name: &str| !env.ip("-o link show").contains(name);

    // Client death.
    {
        let c2 = env.conn();
        let p = create(&c2, "dies");
        enable(&c2, &p, "ovpndie");
        send(&c2, new_peer_msg(&p, 5, remote, "", "", Some(sock_fd(&s)))).expect("NewPeer");
        assert!(!gone(&env, "ovpndie"));
    }
    wait_until(10, "the netdev of a dead client to go", || gone(&env, "ovpndie").then_some(()));

    // Crash (SIGKILL): the next daemon undoes it from the journal.
    let c = env.conn();
    let p = create(&c, "crash");
    enable(&c, &p, "ovpncrash");
    send(&c, new_peer_msg(&p, 1, remote, "", "", Some(sock_fd(&s)))).expect("NewPeer");
    env.signal_daemon("KILL");
    assert!(!gone(&env, "ovpncrash"), "a killed daemon cannot clean up");
    env.start_daemon();
    assert!(gone(&env, "ovpncrash"), "recovery deletes the DCO netdev: {}", env.log());

    // Shutdown.
    let c = env.conn();
    let p = create(&c, "shut");
    enable(&c, &p, "ovpnshut");
    env.signal_daemon("TERM");
    assert!(gone(&env, "ovpnshut"), "shutdown deletes the DCO netdev");
}

/// A GLib client (as the openvpn3 client's gdbuspp proxies do) attaches the
/// transport socket beside the body, with no 'h' in the signature, and
/// reads GetPipeFD's fd from the reply's fd list.
const GLIB_CLIENT: &str = r#"
import base64, socket, struct, sys
from gi.repository import Gio, GLib
D = I = "net.openvpn.v3.netcfg"
conn = Gio.DBusConnection.new_for_address_sync(sys.argv[1],
    Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
def call(path, method, args, fd=None):
    fl = None
    if fd is not None:
        fl = Gio.UnixFDList.new()
        fl.append(fd)
    return conn.call_with_unix_fd_list_sync(D, path, I, method, args, None, Gio.DBusCallFlags.NONE, 5000, fl, None)
dev = call("/net/openvpn/v3/netcfg", "CreateVirtualInterface", GLib.Variant("(s)", ("glibdco",)))[0].unpack()[0]
dco = call(dev, "EnableDCO", GLib.Variant("(s)", ("ovpnglib",)))[0].unpack()[0]
s, peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); peer.bind(("127.0.0.1", 0)); s.connect(peer.getsockname())
port = peer.getsockname()[1]
sa = struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton("127.0.0.1") + bytes(8)
call(dco, "NewPeer", GLib.Variant("(ususs)", (3, base64.b64encode(sa).decode(), 16, "", "")), fd=s.fileno())
res, fds = call(dco, "GetPipeFD", None)
assert fds is not None and fds.get_length() == 1, "GetPipeFD returned no fd"
pipe = socket.socket(fileno=fds.get(0))
assert pipe.type == socket.SOCK_DGRAM and pipe.family == socket.AF_UNIX
print("READY", port, flush=True)
sys.stdin.readline()
call(dev, "Destroy", None)
print("DONE", flush=True)
"#;

#[test]
fn glib_client_attaches_the_fd_beside_the_body() {
    if !guest() {
        return;
    }
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let env = Env::new("dcoglib");
    let mut child = Command::new("ip")
        .args(["netns", "exec", &env.ns, "/usr/bin/python3", "-c", GLIB_CLIENT, &env.addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (with python3-gi)");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = match line.strip_prefix("READY ") {
        Some(p) => p.trim().parse().unwrap(),
        None => {
            let _ = child.kill();
            panic!("GLib client failed: {line:?}\n{}", env.log());
        }
    };
    let mut k = in_ns(&env.ns, || DcoKernel::probe().expect("family"));
    let peer = get_peer(&mut k, env.ifindex("ovpnglib"), 3).expect("peer 3 in the kernel");
    println!("GLib NewPeer (fd without 'h'): kernel peer 3 remote {:?}", peer.remote);
    assert_eq!(peer.remote.map(|r| r.port()), Some(port));
    child.stdin.as_mut().unwrap().write_all(b"\n").unwrap();
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "DONE");
    assert!(child.wait().unwrap().success());
    assert!(!env.ip("-o link show").contains("ovpnglib"));
}

/// ClearConfig, as the packaged netcfg (27.1) answers it, on a tun and on
/// a DCO device: queued addresses and routes are forgotten; on an
/// established device the applied ones go and the link goes down (it
/// stays); a later Establish applies only what came after.
#[test]
fn clear_config_forgets_queued_and_applied_addresses_and_routes() {
    if !guest() {
        return;
    }
    let env = Env::new("dcoclear");
    let c = env.conn();
    let mut tun_fds = Vec::new();
    for dco in [false, true] {
        let p = create(&c, if dco { "ccdco" } else { "cctun" });
        if dco {
            enable(&c, &p, "ovpncc");
        }
        let add = |ip: &str| {
            let _: () = call(&c, &p, "AddIPAddress", (ip, 24u32, "10.8.0.1", false)).unwrap();
        };
        let mut establish = || {
            let r = send(&c, method(&p, "Establish")).expect("Establish");
            if let Some(fd) = r.get1::<OwnedFd>() {
                tun_fds.push(fd); // the tun device lives as long as its fd
            }
            get_prop::<String>(&c, &p, "device_name")
        };
        add("10.8.0.2");
        let nets = vec![("10.7.0.0".to_string(), 24u32, -1i32, false, false)];
        let _: () = call(&c, &p, "AddNetworks", (nets,)).unwrap();
        set_prop(&c, &p, "layer", 3u32).unwrap();
        set_prop(&c, &p, "mtu", 1400u16).unwrap();
        let _: () = call(&c, &p, "ClearConfig", ()).expect("ClearConfig before Establish");
        assert_eq!(get_prop::<u16>(&c, &p, "mtu"), 1400, "properties stay");
        add("10.8.0.3");
        let name = establish();
        let show = env.ip(&format!("addr show dev {name}"));
        println!("{}: after ClearConfig + Establish: {}", if dco { "DCO" } else { "tun" }, show.trim());
        assert!(show.contains("inet 10.8.0.3/24") && !show.contains("inet 10.8.0.2/"), "{show}");
        assert!(!env.our_routes().contains("10.7.0.0"), "the cleared network: {}", env.our_routes());
        assert!(show.contains(",UP"), "{show}");

        let _: () = call(&c, &p, "ClearConfig", ()).expect("ClearConfig after Establish");
        let show = env.ip(&format!("addr show dev {name}"));
        assert!(!show.contains("inet 10.8.0.") && !show.contains(",UP"), "the link stays, bare and down: {show}");
        assert!(!get_prop::<bool>(&c, &p, "active"));
        add("10.8.0.4");
        let name = establish();
        let show = env.ip(&format!("addr show dev {name}"));
        assert!(
            show.contains("inet 10.8.0.4/24") && !show.contains("inet 10.8.0.3/") && show.contains(",UP"),
            "{show}"
        );
        let _: () = call(&c, &p, "Destroy", ()).unwrap();
        assert!(!env.ip("-o addr show").contains("10.8.0."), "{}", env.ip("-o addr show"));
    }
    assert!(env.our_routes().is_empty());
}

/// Lost notifications on the real module. While the daemon is stopped
/// (SIGSTOP), a flood of peer deletions on an MP device of the test's own
/// fills the daemon's notification socket, and the kernel drops the
/// deletions of two of the daemon's three peers that follow (the socket
/// reports ENOBUFS). Running again, the daemon re-reads its peers and
/// reports exactly those two (reason TEARDOWN: the real one was lost), and
/// later notifications are forwarded as before.
///
/// (Upstream's other notification, KEY_SWAP_NTF, is sent only when a key's
/// 32-bit packet counter runs out, which no test can reach on the real
/// module; its record is checked in the unit tests of `dco::pipe` and the
/// parser's golden tests.)
#[test]
fn lost_notifications_resync_reports_exactly_the_lost_peers() {
    if !guest() {
        return;
    }
    use ovpn_netcfgd::dco::{Mode, PeerNew, Transport};
    const FLOOD: u32 = 4500; // ~960 bytes each: more than the daemon's 2 MiB buffer holds
    let fam = guest_family();
    let env = Env::new("dcoflood");
    let c = env.conn();
    let (mut k, pairs, flood_sock) = in_ns(&env.ns, || {
        let mut rtnl = ovpn_netcfgd::netlink::Socket::open().expect("rtnl");
        rtnl.request(ovpn_netcfgd::dco_session::newlink_request(fam, "ovpnflood", Mode::Mp)).expect("MP device");
        let pairs: Vec<_> = (0..3).map(|_| udp_pair()).collect();
        (DcoKernel::probe().expect("family"), pairs, UdpSocket::bind("127.0.0.1:0").unwrap())
    });
    let mut devs = Vec::new();
    for (i, (s, peer)) in pairs.iter().enumerate() {
        let p = create(&c, &format!("fl{i}"));
        let name = format!("ovpnfl{i}");
        enable(&c, &p, &name);
        let pipe = get_pipe(&c, &p);
        send(&c, new_peer_msg(&p, 1, peer.local_addr().unwrap(), "", "", Some(sock_fd(s)))).expect("NewPeer");
        devs.push((p, env.ifindex(&name), pipe));
    }
    let flood_if = env.ifindex("ovpnflood");
    let remote = pairs[0].1.local_addr().unwrap();
    let t0 = Instant::now();
    for id in 1..=FLOOD {
        let vpn4 = std::net::Ipv4Addr::new(10, 200, (id >> 8) as u8, id as u8);
        let p = PeerNew::new(
            fam,
            Mode::Mp,
            PeerId::new(id).unwrap(),
            flood_sock.as_raw_fd(),
            Transport::Udp(remote),
            Some(vpn4),
            None,
        )
        .unwrap();
        k.request(flood_if, &Request::PeerNew(&p), "NEW_PEER").expect("NEW_PEER on the MP device");
    }
    println!("{FLOOD} peers on the test's MP device in {:.1} s", t0.elapsed().as_secs_f64());

    let pid = env.daemon.as_ref().unwrap().id();
    sh(&format!("kill -STOP {pid}"));
    for id in 1..=FLOOD {
        k.request(flood_if, &Request::PeerDel(PeerId::new(id).unwrap()), "DEL_PEER").expect("DEL_PEER flood");
    }
    for (_, ifindex, _) in &devs[..2] {
        k.request(*ifindex, &Request::PeerDel(PeerId::new(1).unwrap()), "DEL_PEER").expect("DEL_PEER of ours");
    }
    // The kernel's own count: the Drops and Rmem columns of the daemon's
    // netlink sockets in /proc/net/netlink of its namespace (matched by inode).
    let ours = daemon_sockets(&env);
    let (mut drops, mut queued) = (0u64, 0u64);
    for l in sh(&format!("ip netns exec {} cat /proc/net/netlink", env.ns)).lines().skip(1) {
        // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
        let f: Vec<&str> = l.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        if ours.contains(&num(9)) {
            (queued, drops) = (queued.max(num(4)), drops + num(8));
        }
    }
    println!("{FLOOD} deletions while the daemon was stopped: {queued} bytes queued, {drops} notifications dropped");
    assert!(drops > 2, "the flood did not overflow the daemon's socket ({drops} drops)");
    sh(&format!("kill -CONT {pid}"));

    for (i, (_, _, pipe)) in devs[..2].iter().enumerate() {
        let rec = read_pipe(pipe, 30);
        println!("device {i}: {rec:?}");
        assert_eq!(rec, Some(peer_deleted_record(fam, 1, 0)), "device {i}: the lost peer, found by the resync");
        assert_eq!(read_pipe(pipe, 1), None, "device {i}: one record only");
    }
    assert_eq!(read_pipe(&devs[2].2, 3), None, "the peer the kernel still has is not reported");
    assert!(get_peer(&mut k, devs[2].1, 1).is_some());
    assert!(env.log().contains("notifications were lost"), "{}", env.log());
    // Later notifications are forwarded as before.
    k.request(devs[2].1, &Request::PeerDel(PeerId::new(1).unwrap()), "DEL_PEER").expect("DEL_PEER");
    assert_eq!(read_pipe(&devs[2].2, 30), Some(peer_deleted_record(fam, 1, 1)), "USERSPACE, as it happened");
    for (p, _, _) in &devs {
        let _: () = call(&c, p, "Destroy", ()).unwrap();
    }
    env.ip("link del ovpnflood");
}
