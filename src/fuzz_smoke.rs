//! Bounded mutation runs over the decoders of untrusted bytes outside the
//! DCO module (those have cargo-fuzz targets in fuzz/): kernel replies
//! (acks, route and rule dumps), D-Bus method arguments, the journal file,
//! the DNS backup files and netcfg.json, through the entry points of
//! `fuzz_wire`. They must never panic and must stay within their bounds.
//! Deterministic, so a failure reproduces.

#[cfg(test)]
mod tests {
    use crate::journal::Undo;
    use crate::netlink;

    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v[i] = rng.next() as u8;
                }
                1 if !v.is_empty() => {
                    let i = rng.below(v.len());
                    v.truncate(i);
                }
                2 => {
                    let i = rng.below(v.len() + 1);
                    v.insert(i, rng.next() as u8);
                }
                _ if v.len() > 4 => {
                    // Lengths are what parsers trust most: hit them.
                    let i = rng.below(v.len() / 4) * 4;
                    v[i] = [0u8, 1, 4, 0xff][rng.below(4)];
                }
                _ => {}
            }
        }
        v
    }

    fn seeds() -> Vec<Vec<u8>> {
        let r = netlink::route::Route {
            dst: "10.97.0.0/24".parse().unwrap(),
            gateway: Some("10.98.0.1".parse().unwrap()),
            oif: 7,
            metric: Some(5),
            table: 254,
            protocol: 79,
            onlink: true,
        };
        let rule = netlink::rule::Rule { ipv6: false, priority: 32700, fwmark: 7, table: 7, protocol: 79 };
        let mut ack = Vec::new();
        ack.extend_from_slice(&36u32.to_ne_bytes());
        ack.extend_from_slice(&2u16.to_ne_bytes());
        ack.extend_from_slice(&((libc::NLM_F_CAPPED | libc::NLM_F_ACK_TLVS) as u16).to_ne_bytes());
        ack.extend_from_slice(&9u32.to_ne_bytes());
        ack.extend_from_slice(&0u32.to_ne_bytes());
        ack.extend_from_slice(&(-17i32).to_ne_bytes());
        ack.extend_from_slice(&[0u8; 16]);
        vec![netlink::route::add(&r).bytes, netlink::rule::add(&rule).bytes, ack]
    }

    #[test]
    fn kernel_reply_decoders_survive_mutations() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let seeds = seeds();
        for i in 0..30_000 {
            let m = mutate(&mut rng, &seeds[i % seeds.len()]);
            for st in netlink::attr::messages(&m).flatten().filter_map(|m| netlink::attr::parse_error(&m).ok()) {
                assert!(st.ext.msg.map_or(0, |s| s.len()) <= m.len());
            }
            let _ = netlink::attrs(&m).count();
            if m.len() > 16 {
                let _ = netlink::route::parse(&m[16..]);
                let _ = netlink::rule::parse_ours(&m[16..], 79);
            }
        }
    }

    #[test]
    fn journal_and_config_text_decoders_survive_mutations() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let lines = [
            "route 10.97.0.0/24 10.98.0.1 7 5 254 79 1",
            "route 2001:db8::/32 - 3 - 254 79 0",
            "addr 4 10.0.0.2 24",
            "link 9 tun3",
            "rule 4 32700 7 7 79",
            "down 9",
            "newlink ovpn dco0",
        ];
        let json = r#"{"log_level": 5, "systemd_resolved": false, "redirect_method": "host-route", "idle_exit": "3"}"#;
        for i in 0..30_000 {
            let l = mutate(&mut rng, lines[i % lines.len()].as_bytes());
            if let Ok(s) = std::str::from_utf8(&l) {
                if let Some(u) = Undo::parse(s) {
                    // Whatever parses must write back to something that parses the same.
                    assert_eq!(Undo::parse(&u.to_string()), Some(u));
                }
            }
            crate::fuzz_wire::fuzz_netcfg_json(&mutate(&mut rng, json.as_bytes()));
        }
    }

    #[test]
    fn journal_files_and_dns_backups_survive_mutations() {
        let mut rng = Rng(0x94d0_49bb_1331_11eb);
        let journal = b"B 0d7c4f2e-1b7a-4bd1-9a53-2b8f0e6c1d22 00000000000000000003\nA 1 link 9 tun3\nA 2 addr 9 10.0.0.2 24\nD 1\nA 3 route 10.97.0.0/24 - 9 - 254 79 0\nD 3\n";
        let meta = b"path /etc/resolv.conf\nkind file\nmode 644\nuid 0\ngid 0\n\0nameserver 192.0.2.53\n";
        let link =
            b"path /etc/resolv.conf\nkind symlink\nmode 0\nuid 0\ngid 0\n\0../run/systemd/resolve/stub-resolv.conf";
        for i in 0..30_000 {
            crate::fuzz_wire::fuzz_journal(&mutate(&mut rng, journal));
            crate::fuzz_wire::fuzz_dns_state(&mutate(&mut rng, if i % 2 == 0 { meta } else { link }));
        }
    }

    /// RTNL replies through `fuzz_wire::fuzz_rtnl` (the `rtnl` cargo-fuzz
    /// target): acks with extack, routes, rules, links.
    #[test]
    fn rtnl_replies_survive_mutations() {
        let mut rng = Rng(0x6a09_e667_f3bc_c909);
        let mut seeds = seeds();
        // An RTM_NEWLINK with IFLA_LINKINFO { IFLA_INFO_KIND "ovpn-dco" }.
        let mut link = vec![0u8; 32];
        link[4..8].copy_from_slice(&7u32.to_ne_bytes());
        let kind = b"ovpn-dco\0";
        let inner = [&((4 + kind.len()) as u16).to_ne_bytes()[..], &1u16.to_ne_bytes(), kind, &[0u8; 3]].concat();
        let outer =
            [&((4 + inner.len()) as u16).to_ne_bytes()[..], &libc::IFLA_LINKINFO.to_ne_bytes(), &inner].concat();
        link.extend_from_slice(&outer);
        let len = link.len() as u32;
        link[0..4].copy_from_slice(&len.to_ne_bytes());
        seeds.push(link);
        seeds.push(netlink::notice_datagram());
        for i in 0..30_000 {
            let m = mutate(&mut rng, &seeds[i % seeds.len()]);
            crate::fuzz_wire::fuzz_rtnl(&m);
        }
    }

    /// D-Bus arguments through `fuzz_wire::fuzz_dbus_args` (the `dbus_args`
    /// cargo-fuzz target): built from pieces, and whole wire messages.
    #[test]
    fn dbus_arguments_survive_mutations() {
        let mut rng = Rng(0xbb67_ae85_84ca_a73b);
        let wire = |m: dbus::Message| {
            let mut m = m;
            m.set_serial(1);
            let mut v = vec![0u8];
            m.marshal(|b| {
                v.extend_from_slice(b);
                Ok::<(), ()>(())
            })
            .unwrap();
            v
        };
        let call = |member: &str| {
            dbus::Message::new_method_call(
                "net.openvpn.v3.netcfg",
                "/net/openvpn/v3/netcfg/1_x",
                "net.openvpn.v3.netcfg",
                member,
            )
            .unwrap()
        };
        let seeds: Vec<Vec<u8>> = vec![
            b"\x01fd00::53\xff10.8.0.1\xff10.8.0.1".to_vec(),
            b"\x02Example.COM.\xffa-b.c".to_vec(),
            b"\x0210.97.0.0\xff\x18\xff2001:db8::\xff0".to_vec(),
            b"\x0310.98.0.2\xff10.98.0.1\xff\x18".to_vec(),
            b"\x04mtu\xff1400".to_vec(),
            wire(call("AddDNS").append1(vec!["10.0.0.1", "fd00::1"])),
            wire(call("AddNetworks").append1(vec![("10.97.0.0", 24u32, -1i32, false, false)])),
            wire(call("AddIPAddress").append2("10.98.0.2", 24u32).append2("10.98.0.1", false)),
        ];
        for i in 0..30_000 {
            let m = mutate(&mut rng, &seeds[i % seeds.len()]);
            crate::fuzz_wire::fuzz_dbus_args(&m);
        }
    }
}
