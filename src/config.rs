//! Command line and `<state-dir>/netcfg.json`, compatible with the reference
//! service's options and keys (plus a few of our own).

use std::path::PathBuf;

use crate::settings::{words, Word};

words! {
    pub enum RedirectMethod {
        HostRoute = "host-route",
        BindDevice = "bind-device",
        Fwmark = "fwmark",
        None = "none",
    }
}

/// The table the fwmark method uses for mark `m` (as wg-quick: the mark).
pub fn fwmark_table(m: u32) -> Option<u32> {
    (!matches!(m, 0 | 253..=255)).then_some(m)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsChoice {
    Auto,
    Resolved,
    Resolvconf,
    File(PathBuf),
    /// dnsmasq, through `Config::dnsmasq_servers`.
    Dnsmasq,
    None,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub log_level: u32,
    pub log_file: Option<String>,
    /// Zero = never.
    pub idle_exit: std::time::Duration,
    pub dns: DnsChoice,
    /// The command line or netcfg.json named a DNS backend.
    pub dns_chosen: bool,
    /// The servers file (`--servers-file`) the dnsmasq backend manages.
    pub dnsmasq_servers: PathBuf,
    pub redirect: RedirectMethod,
    pub somark: Option<u32>,
    pub state_dir: PathBuf,
    /// Set when the user gave --state-dir (or it came from activation).
    pub config_file: Option<PathBuf>,
    pub bus_address: Option<String>,
    /// `--run-as`; without it the first existing of [`ACCOUNTS`].
    pub run_as: Option<String>,
    pub run_as_root: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: 4,
            log_file: None,
            idle_exit: std::time::Duration::from_secs(300),
            dns: DnsChoice::Auto,
            dns_chosen: false,
            dnsmasq_servers: PathBuf::from("/var/run/ovpn-netcfgd/dnsmasq.servers"),
            redirect: RedirectMethod::HostRoute,
            somark: None,
            state_dir: PathBuf::from("/var/lib/ovpn-netcfgd"),
            config_file: None,
            bus_address: None,
            run_as: None,
            run_as_root: false,
        }
    }
}

/// What the command line asked for.
pub enum Cli {
    Run(Config),
    Help,
    Version,
}

/// The accounts the daemon switches to when `--run-as` is not given, the
/// first that exists: its own dedicated account, then the account OpenVPN 3
/// Linux runs as upstream (`openvpn`) and on Debian and Ubuntu (`_openvpn`).
pub const ACCOUNTS: [&str; 3] = ["ovpn-netcfgd", "openvpn", "_openvpn"];

/// The state directory Debian's and upstream's activation files give the
/// reference service.
pub const REFERENCE_STATE_DIR: &str = "/var/lib/openvpn3";

pub const USAGE: &str = "\
ovpn-netcfgd: the network configuration service of OpenVPN 3 Linux
(D-Bus name net.openvpn.v3.netcfg), a drop-in replacement for
openvpn3-service-netcfg. OpenVPN 3 clients ask it over the system bus to
create tun devices and to set their addresses, routes and DNS. It is
started as root by D-Bus activation and switches to a service account.

Usage: ovpn-netcfgd [OPTIONS]

  --log-level N            log verbosity 0-6 (default 4)
  --log-file FILE|stdout:  also write the log to FILE
  --colour                 accepted for compatibility, ignored
  --idle-exit MINUTES      exit when idle this long (default 5, 0 = never)
  --resolv-conf FILE       DNS via this resolv.conf file
  --systemd-resolved       DNS via systemd-resolved
  --dns-backend B          auto|resolved|dnsmasq|resolvconf|file|none (default auto)
  --dnsmasq-servers FILE   dnsmasq's servers file (default /var/run/ovpn-netcfgd/dnsmasq.servers)
  --redirect-method M      host-route|bind-device|fwmark|none (default host-route)
  --set-somark MARK        SO_MARK for protected sockets
  --state-dir DIR          state and netcfg.json (default /var/lib/ovpn-netcfgd)
  --bus-address ADDRESS    D-Bus address (default $DBUS_SYSTEM_BUS_ADDRESS or system bus)
  --foreground             stay in the foreground (always true; for scripts)
  --run-as USER            account to switch to (default: the first that
                           exists of ovpn-netcfgd, openvpn, _openvpn)
  --run-as-root            keep running as root
  --version                print the version and exit
  -h, --help               this text
";

fn num(opt: &str, v: &str, max: u32) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("{opt}: expected a number 0-{max}, got '{v}'")),
    }
}

/// The settings both the command line and netcfg.json make: the option
/// and the key.
const SHARED: [(&str, &str); 7] = [
    ("--log-level", "log_level"),
    ("--log-file", "log_file"),
    ("--idle-exit", "idle_exit"),
    ("--redirect-method", "redirect_method"),
    ("--set-somark", "set_somark"),
    ("--dns-backend", "dns_backend"),
    ("--dnsmasq-servers", "dnsmasq_servers_file"),
];

/// Sets the `SHARED` setting `key` to `v`; errors name `opt` (the option
/// or the key).
fn set(c: &mut Config, opt: &str, key: &str, v: String) -> Result<(), String> {
    match key {
        "log_level" => c.log_level = num(opt, &v, 6)?,
        "log_file" => c.log_file = Some(v),
        "idle_exit" => c.idle_exit = idle(opt, &v)?,
        "redirect_method" => {
            c.redirect = RedirectMethod::from_word(&v).ok_or(format!("{opt}: unknown method '{v}'"))?;
        }
        "set_somark" => c.somark = Some(num(opt, &v, u32::MAX)?),
        "dns_backend" => {
            c.dns = match v.as_str() {
                "auto" => DnsChoice::Auto,
                "resolved" | "systemd-resolved" => DnsChoice::Resolved,
                "resolvconf" => DnsChoice::Resolvconf,
                "dnsmasq" => DnsChoice::Dnsmasq,
                "file" => DnsChoice::File("/etc/resolv.conf".into()),
                "none" => DnsChoice::None,
                _ => return Err(format!("{opt}: unknown backend '{v}'")),
            };
            c.dns_chosen = true;
        }
        _ => c.dnsmasq_servers = v.into(),
    }
    Ok(())
}

/// Parses argv (without the program name). Errors are usage errors (exit 2).
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, String> {
    let mut c = Config::default();
    let mut dns_flags = 0;
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let val = |it: &mut I::IntoIter| -> Result<String, String> {
            inline.clone().or_else(|| it.next()).ok_or(format!("{name} needs a value"))
        };
        if matches!(name.as_str(), "--resolv-conf" | "--systemd-resolved" | "--dns-backend") {
            dns_flags += 1;
        }
        if let Some((_, key)) = SHARED.iter().find(|(o, _)| *o == name) {
            set(&mut c, &name, key, val(&mut it)?)?;
            continue;
        }
        match name.as_str() {
            "-h" | "--help" => return Ok(Cli::Help),
            "--version" => return Ok(Cli::Version),
            // Always in the foreground; both are for scripts written for the reference.
            "--colour" | "--color" | "--foreground" => {}
            "--resolv-conf" => c.dns = DnsChoice::File(val(&mut it)?.into()),
            "--systemd-resolved" => c.dns = DnsChoice::Resolved,
            "--state-dir" => {
                c.state_dir = val(&mut it)?.into();
                c.config_file = Some(c.state_dir.join("netcfg.json"));
            }
            "--bus-address" => c.bus_address = Some(val(&mut it)?),
            "--run-as" => c.run_as = Some(val(&mut it)?),
            "--run-as-root" => c.run_as_root = true,
            // Reference debug-build option; we keep only what is needed anyway.
            "--disable-capabilities" => {}
            _ => return Err(format!("unknown option '{a}'")),
        }
    }
    if dns_flags > 1 {
        return Err("--resolv-conf, --systemd-resolved and --dns-backend exclude each other".into());
    }
    c.dns_chosen = dns_flags > 0;
    Ok(Cli::Run(c))
}

/// Minutes, as the reference; `Ns` for seconds (tests, impatient admins).
fn idle(opt: &str, v: &str) -> Result<std::time::Duration, String> {
    match v.strip_suffix('s') {
        Some(secs) => Ok(std::time::Duration::from_secs(num(opt, secs, 1_000_000)? as u64)),
        None => Ok(std::time::Duration::from_secs(num(opt, v, 100_000)? as u64 * 60)),
    }
}

impl Config {
    /// Checks option combinations; errors are usage errors (exit 2).
    pub fn validate(&self) -> Result<(), String> {
        // Compared byte for byte with dnsmasq's own configuration.
        if !self.dnsmasq_servers.is_absolute() || self.dnsmasq_servers.to_str().map_or(true, |s| s.contains('\n')) {
            return Err("--dnsmasq-servers needs an absolute UTF-8 path without newlines".into());
        }
        match (self.redirect, self.somark) {
            (RedirectMethod::Fwmark, None) => Err("--redirect-method fwmark needs --set-somark".into()),
            (RedirectMethod::Fwmark, Some(m)) if fwmark_table(m).is_none() => {
                Err(format!("--set-somark {m} cannot be used as a routing table (0, 253-255 are reserved)"))
            }
            _ => Ok(()),
        }
    }

    /// Started with the reference service's state directory (as Debian's
    /// and upstream's activation files start it), the daemon also takes the
    /// reference's DNS default: no backend unless the command line or
    /// netcfg.json names one (`openvpn3-admin netcfg-service --config-set`
    /// writes it there). Swapping the reference for this daemon therefore
    /// never changes DNS where the reference would not. Returns the note
    /// to log when it applies.
    pub fn reference_dns_default(&mut self) -> Option<String> {
        if self.dns_chosen || self.state_dir != std::path::Path::new(REFERENCE_STATE_DIR) {
            return None;
        }
        self.dns = DnsChoice::None;
        Some(format!(
            "state directory {REFERENCE_STATE_DIR} is the reference service's: no DNS backend unless \
             --systemd-resolved, --resolv-conf, --dns-backend or netcfg.json names one, as the reference does"
        ))
    }
}

/// Applies `netcfg.json` over `c` (the file wins, as in the reference).
/// Returns the warnings to log; errors are fatal config errors.
pub fn apply_json(c: &mut Config, text: &str) -> Result<Vec<String>, String> {
    let mut warn = Vec::new();
    let obj = json::parse_flat_object(text)?;
    for (k, v) in &obj {
        let Some((_, key)) = SHARED.iter().find(|(_, key)| key == k) else { continue };
        let v = match v {
            json::Value::Str(s) => s.clone(),
            json::Value::Num(n) => n.to_string(),
            _ => return Err(format!("netcfg.json: '{k}' must be a string or number")),
        };
        set(c, k, key, v)?;
    }
    // DNS keys in the reference's order, so systemd_resolved wins over resolv_conf_file.
    if let Some((_, v)) = obj.iter().find(|(k, _)| k == "resolv_conf_file") {
        match v {
            json::Value::Str(s) if !s.is_empty() => {
                c.dns = DnsChoice::File(s.into());
                c.dns_chosen = true;
            }
            _ => warn.push("netcfg.json: ignoring empty resolv_conf_file".into()),
        }
    }
    if let Some((_, v)) = obj.iter().find(|(k, _)| k == "systemd_resolved") {
        // The reference treats any present key, even `false`, as "on"; we do not.
        let on = match v {
            json::Value::Bool(b) => *b,
            json::Value::Str(s) => matches!(s.as_str(), "true" | "yes" | "1"),
            json::Value::Num(n) => *n != 0,
            json::Value::Null => false,
        };
        if on {
            c.dns = DnsChoice::Resolved;
            c.dns_chosen = true;
        } else if c.dns == DnsChoice::Resolved {
            c.dns = DnsChoice::Auto;
        }
    }
    Ok(warn)
}

/// Just enough JSON for a flat object of scalars (the reference's netcfg.json).
pub mod json {
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Str(String),
        Num(i64),
        Bool(bool),
        Null,
    }

    pub fn parse_flat_object(s: &str) -> Result<Vec<(String, Value)>, String> {
        let mut p = P { b: s.as_bytes(), i: 0 };
        let mut out = Vec::new();
        if p.peek().is_none() {
            return Ok(out); // an empty file is accepted
        }
        p.expect(b'{')?;
        while !p.eat(b'}') {
            if !out.is_empty() {
                p.expect(b',')?;
            }
            let k = p.string()?;
            p.expect(b':')?;
            let v = if p.peek() == Some(b'"') { Value::Str(p.string()?) } else { p.bare()? };
            if out.len() >= 64 {
                return Err("too many keys".into());
            }
            out.push((k, v));
        }
        if p.peek().is_some() {
            return Err(p.err("trailing data"));
        }
        Ok(out)
    }

    struct P<'a> {
        b: &'a [u8],
        i: usize,
    }

    impl P<'_> {
        fn err(&self, m: &str) -> String {
            format!("netcfg.json: {m} at byte {}", self.i)
        }
        /// The next byte after blanks and comments: the reference's
        /// `openvpn3-admin netcfg-service --config-set` writes a `//` line
        /// before each key (JsonCpp's style), so `/* */` is accepted as well.
        fn peek(&mut self) -> Option<u8> {
            loop {
                let rest = &self.b[self.i..];
                if matches!(rest.first(), Some(b' ' | b'\t' | b'\r' | b'\n')) {
                    self.i += 1;
                } else if rest.starts_with(b"//") {
                    self.i += rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
                } else if rest.starts_with(b"/*") {
                    // unterminated: skip to the end; the caller reports what is missing
                    self.i += rest[2..].windows(2).position(|w| w == b"*/").map_or(rest.len(), |p| p + 4);
                } else {
                    return rest.first().copied();
                }
            }
        }
        /// Takes `c` if it comes next.
        fn eat(&mut self, c: u8) -> bool {
            let found = self.peek() == Some(c);
            self.i += usize::from(found);
            found
        }
        fn expect(&mut self, c: u8) -> Result<(), String> {
            self.eat(c).then_some(()).ok_or_else(|| self.err(&format!("expected '{}'", c as char)))
        }
        /// The next byte as it is (inside a string).
        fn next(&mut self) -> Option<u8> {
            let c = self.b.get(self.i).copied();
            self.i += 1;
            c
        }
        /// `true`, `false`, `null` or an integer.
        fn bare(&mut self) -> Result<Value, String> {
            let st = self.i;
            while matches!(self.b.get(self.i), Some(b'a'..=b'z' | b'0'..=b'9' | b'-')) {
                self.i += 1;
            }
            // ASCII by construction
            let t = std::str::from_utf8(&self.b[st..self.i]).unwrap_or_default();
            Ok(match t {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                "null" => Value::Null,
                _ => Value::Num(t.parse().map_err(|_| self.err("expected a string, number, true, false or null"))?),
            })
        }
        fn string(&mut self) -> Result<String, String> {
            self.expect(b'"')?;
            let mut out = Vec::new();
            loop {
                match self.next() {
                    None => return Err(self.err("unterminated string")),
                    Some(b'"') => break,
                    Some(b'\\') => match self.next() {
                        Some(c @ (b'"' | b'\\' | b'/')) => out.push(c),
                        Some(b'n') => out.push(b'\n'),
                        Some(b't') => out.push(b'\t'),
                        _ => return Err(self.err("unsupported escape")),
                    },
                    Some(c) => out.push(c),
                }
                if out.len() > 4096 {
                    return Err(self.err("string too long"));
                }
            }
            String::from_utf8(out).map_err(|_| self.err("invalid UTF-8"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Config {
        match parse_args(args.iter().map(|s| s.to_string())).unwrap() {
            Cli::Run(c) => c,
            _ => panic!("not a run"),
        }
    }

    #[test]
    fn reference_options_parse() {
        let c = run(&[
            "--log-level",
            "6",
            "--idle-exit=0",
            "--redirect-method",
            "bind-device",
            "--set-somark",
            "51820",
            "--state-dir",
            "/tmp/x",
        ]);
        assert_eq!(c.log_level, 6);
        assert_eq!(c.idle_exit, std::time::Duration::ZERO);
        assert_eq!(c.redirect, RedirectMethod::BindDevice);
        assert_eq!(c.somark, Some(51820));
        assert_eq!(c.config_file.unwrap(), PathBuf::from("/tmp/x/netcfg.json"));
    }

    #[test]
    fn idle_exit_and_fwmark_checks() {
        assert_eq!(run(&["--idle-exit", "2s"]).idle_exit, std::time::Duration::from_secs(2));
        assert!(run(&["--redirect-method", "fwmark"]).validate().is_err());
        assert!(run(&["--redirect-method", "fwmark", "--set-somark", "254"]).validate().is_err());
        assert!(run(&["--redirect-method", "fwmark", "--set-somark", "51820"]).validate().is_ok());
    }

    #[test]
    fn bad_options_are_usage_errors() {
        for a in [
            &["--log-level", "7"][..],
            &["--redirect-method", "tunnel"],
            &["--bogus"],
            &["--resolv-conf", "/x", "--systemd-resolved"],
            &["--log-level"],
        ] {
            assert!(parse_args(a.iter().map(|s| s.to_string())).is_err(), "{a:?}");
        }
    }

    #[test]
    fn reference_state_dir_means_no_dns_unless_chosen() {
        let mut c = run(&["--state-dir", REFERENCE_STATE_DIR]);
        assert!(c.reference_dns_default().is_some());
        assert_eq!(c.dns, DnsChoice::None);
        // netcfg.json as openvpn3-admin writes it turns resolved on
        let mut c = run(&["--state-dir", "/var/lib/openvpn3"]);
        apply_json(&mut c, r#"{"systemd_resolved": true}"#).unwrap();
        assert!(c.reference_dns_default().is_none());
        assert_eq!(c.dns, DnsChoice::Resolved);
        // "off" in the file is not a choice of backend
        let mut c = run(&["--state-dir", "/var/lib/openvpn3"]);
        apply_json(&mut c, r#"{"systemd_resolved": false}"#).unwrap();
        assert!(c.reference_dns_default().is_some());
        assert_eq!(c.dns, DnsChoice::None);
        let mut c = run(&["--state-dir", "/var/lib/openvpn3", "--dns-backend", "auto"]);
        assert!(c.reference_dns_default().is_none());
        assert_eq!(c.dns, DnsChoice::Auto);
        // our own state directory keeps auto
        let mut c = run(&["--state-dir", "/var/lib/ovpn-netcfgd"]);
        assert!(c.reference_dns_default().is_none());
        assert_eq!(c.dns, DnsChoice::Auto);
    }

    /// Byte for byte what openvpn3-admin 27.1 writes.
    #[test]
    fn json_as_the_reference_admin_tool_writes_it() {
        let text = "{\n\t//  Option --idle-exit :: Idle-Exit timer\n\t\"idle_exit\" : \"7\",\n\
                    \t//  Option --log-level :: Log level\n\t\"log_level\" : \"5\",\n\
                    \t//  Option --redirect-method :: Server route redirection mode\n\
                    \t\"redirect_method\" : \"bind-device\",\n\
                    \t//  Option --set-somark :: Netfilter SO_MARK\n\t\"set_somark\" : \"42\",\n\
                    \t//  Option --systemd-resolved :: Systemd-resolved in use\n\t\"systemd_resolved\" : true\n}\n";
        let mut c = Config::default();
        assert!(apply_json(&mut c, text).unwrap().is_empty());
        assert_eq!(c.idle_exit, std::time::Duration::from_secs(7 * 60));
        assert_eq!(c.log_level, 5);
        assert_eq!(c.redirect, RedirectMethod::BindDevice);
        assert_eq!(c.somark, Some(42));
        assert_eq!(c.dns, DnsChoice::Resolved);
        assert_eq!(json::parse_flat_object("/* a */ { /* b */ } // c").unwrap(), vec![]);
        assert!(json::parse_flat_object("{ /* open").is_err());
        assert!(json::parse_flat_object("{} /").is_err());
    }

    #[test]
    fn json_false_means_off_and_file_wins() {
        let mut c = run(&["--systemd-resolved"]);
        apply_json(&mut c, r#"{"systemd_resolved": false, "log_level": "5", "idle_exit": 3}"#).unwrap();
        assert_eq!(c.dns, DnsChoice::Auto);
        assert_eq!(c.log_level, 5);
        assert_eq!(c.idle_exit, std::time::Duration::from_secs(180));
        let mut c = Config::default();
        apply_json(&mut c, r#"{"resolv_conf_file": "/etc/r", "systemd_resolved": true}"#).unwrap();
        assert_eq!(c.dns, DnsChoice::Resolved);
        assert!(apply_json(&mut c, r#"{"log_level": 9}"#).is_err());
        assert!(apply_json(&mut c, r#"{"a": [1]}"#).is_err());
        assert!(apply_json(&mut Config::default(), "  ").unwrap().is_empty());
    }
}
