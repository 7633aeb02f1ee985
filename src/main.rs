//! Entry point: parse options and the config file, set up logging, run.

use ovpn_netcfgd::config::{self, Cli};
use ovpn_netcfgd::{daemon, logging};

fn main() {
    let mut cfg = match config::parse_args(std::env::args().skip(1)) {
        Ok(Cli::Run(c)) => c,
        Ok(Cli::Help) => {
            print!("{}", config::USAGE);
            return;
        }
        Ok(Cli::Version) => {
            println!("{}", daemon::VERSION);
            return;
        }
        Err(e) => {
            eprintln!("ovpn-netcfgd: {e}\n\n{}", config::USAGE);
            std::process::exit(2);
        }
    };
    let mut warnings = Vec::new();
    if let Some(path) = cfg.config_file.clone() {
        match std::fs::read_to_string(&path) {
            Ok(text) => match config::apply_json(&mut cfg, &text) {
                Ok(w) => warnings = w,
                Err(e) => {
                    eprintln!("ovpn-netcfgd: {}: {e}", path.display());
                    std::process::exit(2);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warnings.push(format!("cannot read {}: {e}", path.display())),
        }
    }
    let dns_note = cfg.reference_dns_default();
    if let Err(e) = cfg.validate() {
        eprintln!("ovpn-netcfgd: {e}");
        std::process::exit(2);
    }
    logging::init(cfg.log_level);
    if let Some(f) = &cfg.log_file {
        if let Err(e) = logging::open_file(f) {
            eprintln!("ovpn-netcfgd: --log-file {f}: {e}");
            std::process::exit(2);
        }
        ovpn_netcfgd::privs::chown_for_service(f, &cfg);
    }
    for w in warnings {
        log::warn!("{w}");
    }
    if let Some(n) = dns_note {
        log::info!("{n}");
    }
    std::process::exit(daemon::run(cfg));
}
