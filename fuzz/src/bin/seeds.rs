//! Writes the seed corpus: `cargo run --bin seeds` -> corpus/<target>/seed-N.
use ovpn_netcfgd_fuzz::dco::fuzz::{seeds, Target, TARGETS};

fn name(t: Target) -> &'static str {
    match t {
        Target::KeyConfig => "keyconfig",
        Target::B64Sockaddr => "b64_sockaddr",
        Target::Netlink => "netlink",
        Target::Ctrl => "ctrl",
    }
}

fn main() -> std::io::Result<()> {
    for t in TARGETS {
        let dir = std::path::Path::new("corpus").join(name(t));
        std::fs::create_dir_all(&dir)?;
        for (i, s) in seeds(t).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), s)?;
        }
    }
    Ok(())
}
