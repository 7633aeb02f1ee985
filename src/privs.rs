//! Least privilege: start as root, keep only the capabilities the chosen
//! configuration needs, become the service user, forbid regaining anything,
//! and prove it.

use crate::config::{Config, DnsChoice, RedirectMethod, ACCOUNTS};
use crate::state::RunAs;
use crate::sys::{self, CAP_DAC_OVERRIDE, CAP_KILL, CAP_NET_ADMIN, CAP_NET_RAW};

/// The capabilities this configuration needs at start-up, and which of
/// them children (resolvconf) must inherit. `fit_to_dns` trims them once
/// the DNS backend is known.
pub fn needed(cfg: &Config) -> (Vec<u32>, Vec<u32>) {
    use DnsChoice as D;
    // The resolv.conf file (and resolvconf(8), which runs as our user and
    // writes under /run) need to write files root owns. Until the backend
    // is chosen and a crashed run's files are restored, any choice but
    // `none` may need that. dnsmasq's servers file is the service user's
    // own, but its backup goes to the state directory, which is root's.
    // SIGHUP to dnsmasq (another user's process) only where dnsmasq may be
    // chosen; dropped again by `fit_to_dns` unless it is.
    caps(
        cfg,
        cfg.dns != D::None,
        matches!(cfg.dns, D::Resolvconf | D::Auto | D::Resolved),
        matches!(cfg.dns, D::Auto | D::Dnsmasq),
    )
}

/// What the chosen DNS backend (by its `Dns::backend_name`) needs beyond
/// the base: the file backend writes resolv.conf itself, resolvconf's
/// script needs the capability too, dnsmasq's backend writes its backup to
/// root's state directory; systemd-resolved and none need neither.
pub fn for_backend(cfg: &Config, backend: &str) -> (Vec<u32>, Vec<u32>) {
    if backend == "dnsmasq" && !in_bounding_set(CAP_KILL) {
        log::warn!("CAP_KILL is not in the bounding set: only a dnsmasq running as this user can be told to reload");
    }
    let write = matches!(backend, "resolv.conf" | "resolvconf" | "dnsmasq");
    caps(cfg, write, backend == "resolvconf", backend == "dnsmasq")
}

/// The base capabilities, and for DNS: writing root's files (`write`),
/// in children too (`child`), signalling dnsmasq (`kill`). CAP_KILL only
/// if the launcher allows it (a unit's bounding set): `auto` must not fail
/// to start for a backend it may not even choose.
fn caps(cfg: &Config, write: bool, child: bool, kill: bool) -> (Vec<u32>, Vec<u32>) {
    let mut caps = vec![CAP_NET_ADMIN];
    if cfg.redirect == RedirectMethod::BindDevice {
        caps.push(CAP_NET_RAW);
    }
    if write {
        caps.push(CAP_DAC_OVERRIDE);
    }
    if kill && in_bounding_set(CAP_KILL) {
        caps.push(CAP_KILL);
    }
    (caps, if child { vec![CAP_DAC_OVERRIDE] } else { Vec::new() })
}

/// Once the DNS backend is chosen and crash leftovers are restored: drops
/// the file-writing capability if that backend does not need it. Lowering
/// a capability from the permitted set also lowers it in the ambient set.
pub fn fit_to_dns(cfg: &Config, backend: &str) -> Result<(), String> {
    if cfg.run_as_root {
        return Ok(());
    }
    let (had, had_ambient) = needed(cfg);
    let (caps, ambient) = for_backend(cfg, backend);
    if had == caps && had_ambient == ambient {
        return Ok(());
    }
    sys::capset(&caps, &ambient).map_err(|e| format!("capset: {e}"))?;
    if ambient.is_empty() && !had_ambient.is_empty() {
        sys::ambient_clear_all().map_err(|e| format!("clearing ambient capabilities: {e}"))?;
    }
    log::info!("DNS backend {backend}: capabilities now {:?}", names(&caps));
    Ok(())
}

/// Whether this process may still hold `cap` (/proc/self/status CapBnd).
fn in_bounding_set(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bnd = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).map(str::trim);
    bnd.and_then(|h| u64::from_str_radix(h, 16).ok()).is_some_and(|b| cap < 64 && b & (1 << cap) != 0)
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

/// The account to switch to: `--run-as`, else the first of [`ACCOUNTS`]
/// that exists. Only root can switch: an error otherwise.
pub fn account(cfg: &Config) -> Result<RunAs, String> {
    if !nix::unistd::Uid::effective().is_root() {
        let why = "it drops to --run-as itself; use --run-as-root only for debugging";
        return Err(format!("must be started as root ({why})"));
    }
    let lookup = |name: &str| nix::unistd::User::from_name(name).map_err(|e| format!("looking up user '{name}': {e}"));
    if let Some(name) = &cfg.run_as {
        let user = lookup(name)?.ok_or_else(|| format!("user '{name}' does not exist (--run-as)"))?;
        return Ok(RunAs { user, why: "--run-as".into() });
    }
    for name in ACCOUNTS {
        if let Some(user) = lookup(name)? {
            return Ok(RunAs { user, why: format!("the first existing of {}", ACCOUNTS.join(", ")) });
        }
    }
    Err(format!(
        "none of the service accounts {} exists: create one (systemd-sysusers ovpn-netcfgd.conf) \
         or name another with --run-as",
        ACCOUNTS.join(", ")
    ))
}

/// Drops to `run_as` (the [`account`] `main` found; None: `--run-as-root`)
/// with only the needed capabilities. Errors are fatal configuration
/// errors.
pub fn drop_privileges(cfg: &Config, run_as: Option<&RunAs>) -> Result<(), String> {
    let Some(RunAs { user, why }) = run_as else {
        log::warn!("--run-as-root: keeping root and every capability");
        return Ok(());
    };
    let (caps, ambient) = needed(cfg);
    // While still root: shrink the bounding set, so nothing can come back.
    for c in (0..=last_cap()).filter(|c| !caps.contains(c)) {
        sys::capbset_drop(c).map_err(|e| format!("dropping capability {c} from the bounding set: {e}"))?;
    }
    nix::sys::prctl::set_keepcaps(true).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
    nix::unistd::setgroups(&[]).map_err(|e| format!("setgroups: {e}"))?;
    nix::unistd::setresgid(user.gid, user.gid, user.gid).map_err(|e| format!("setresgid: {e}"))?;
    nix::unistd::setresuid(user.uid, user.uid, user.uid).map_err(|e| format!("setresuid: {e}"))?;
    // Inheritable: only what a child (resolvconf) is to get, nothing more.
    sys::capset(&caps, &ambient).map_err(|e| format!("capset: {e}"))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
    for c in &ambient {
        sys::ambient_raise(*c).map_err(|e| format!("raising ambient capability {c}: {e}"))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(|e| format!("PR_SET_NO_NEW_PRIVS: {e}"))?;
    // Prove it: getting root back must fail.
    if nix::unistd::setuid(nix::unistd::Uid::from_raw(0)).is_ok() {
        return Err("still able to become root after dropping privileges".into());
    }
    log::info!(
        "running as {} (uid {}, {why}), capabilities {:?}; regaining root fails as it should",
        user.name,
        user.uid,
        names(&caps)
    );
    Ok(())
}

fn names(caps: &[u32]) -> Vec<&'static str> {
    const NAMES: [(u32, &str); 4] = [
        (CAP_DAC_OVERRIDE, "CAP_DAC_OVERRIDE"),
        (CAP_KILL, "CAP_KILL"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        (CAP_NET_RAW, "CAP_NET_RAW"),
    ];
    caps.iter().map(|c| NAMES.iter().find(|(n, _)| n == c).map_or("?", |(_, name)| name)).collect()
}
