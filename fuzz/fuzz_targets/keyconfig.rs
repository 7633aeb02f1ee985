#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ovpn_netcfgd_fuzz::dco::fuzz::fuzz_keyconfig(data);
});
