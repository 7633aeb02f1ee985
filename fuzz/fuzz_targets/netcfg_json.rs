#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ovpn_netcfgd::fuzz_wire::fuzz_netcfg_json(data);
});
