//! Entry point: parse options and the config file, set up logging, run.

use ovpn_netcfgd::config::{self, Cli};
use ovpn_netcfgd::{daemon, logging, privs, sessions, state};

fn main() {
    let mut cfg = match config::parse_args(std::env::args().skip(1)) {
        Ok(Cli::Run(c)) => c,
        Ok(Cli::Help) => {
            print!("{}", config::USAGE);
            return;
        }
        Ok(Cli::Version) => {
            println!("{}", sessions::VERSION);
            return;
        }
        Err(e) => fail(&format!("{e}\n\n{}", config::USAGE)),
    };
    // As root, before anything is read from the state directory.
    let run_as = (!cfg.run_as_root).then(|| privs::account(&cfg).unwrap_or_else(|e| fail(&e)));
    let st = state::prepare(&cfg.state_dir, run_as).unwrap_or_else(|e| fail(&e));
    let mut warnings = st.warnings.clone();
    if let Some(text) = st.config.as_ref().filter(|_| cfg.config_file.is_some()) {
        match config::apply_json(&mut cfg, text) {
            Ok(w) => warnings.extend(w),
            Err(e) => fail(&format!("{}/netcfg.json: {e}", st.dir.path.display())),
        }
    }
    let dns_note = cfg.reference_dns_default();
    cfg.validate().unwrap_or_else(|e| fail(&e));
    logging::init(cfg.log_level);
    if let Some(f) = &cfg.log_file {
        let uid = st.run_as.as_ref().filter(|r| r.dedicated()).map(|r| r.user.uid.as_raw());
        if let Err(e) = logging::open_file(f, uid) {
            fail(&format!("--log-file {f}: {e}; refusing to log there"));
        }
    }
    for w in warnings {
        log::warn!("{w}");
    }
    if let Some(n) = dns_note {
        log::info!("{n}");
    }
    std::process::exit(daemon::run(cfg, st));
}

/// A fatal configuration error (exit 2), before logging is set up.
fn fail(msg: &str) -> ! {
    eprintln!("ovpn-netcfgd: {msg}");
    std::process::exit(2);
}
