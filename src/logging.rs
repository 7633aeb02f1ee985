//! Logging: env_logger formats to stderr (and the --log-file), and every
//! record at or above the service's log level is queued for a `Log` signal,
//! which the main loop sends (logging itself never touches the bus).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

/// Queued (category, message) for Log signals; bounded.
static QUEUE: Mutex<VecDeque<(u32, String)>> = Mutex::new(VecDeque::new());
static FILE: Mutex<Option<(String, File)>> = Mutex::new(None);
const QUEUE_MAX: usize = 1000;

/// OpenVPN 3 log categories (`LogCategory`): DEBUG 1 … ERROR 6.
pub fn category(l: log::Level) -> u32 {
    match l {
        log::Level::Trace => 1,
        log::Level::Debug => 2,
        log::Level::Info => 4,
        log::Level::Warn => 5,
        log::Level::Error => 6,
    }
}

/// The service log level (0-6, reference semantics) as a `log` filter.
pub fn filter(level: u32) -> log::LevelFilter {
    match level {
        0 | 1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 | 4 => log::LevelFilter::Info,
        5 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

struct Logger {
    stderr: env_logger::Logger,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        if self.stderr.matches(r) {
            self.stderr.log(r);
        }
        let msg = r.args().to_string();
        if let Ok(mut f) = FILE.lock() {
            if let Some((_, file)) = f.as_mut() {
                let _ = writeln!(file, "{} {msg}", r.level());
            }
        }
        if let Ok(mut q) = QUEUE.lock() {
            if q.len() >= QUEUE_MAX {
                q.pop_front();
            }
            q.push_back((category(r.level()), msg));
        }
    }

    fn flush(&self) {}
}

/// Installs the logger. `RUST_LOG` may narrow or widen the stderr output.
pub fn init(level: u32) {
    let mut b = env_logger::Builder::new();
    b.filter_level(filter(level)).format_timestamp(None).format_target(false);
    if let Ok(s) = std::env::var("RUST_LOG") {
        b.parse_filters(&s);
    }
    let logger = Logger { stderr: b.build() };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(filter(level));
    }
}

pub fn set_level(level: u32) {
    log::set_max_level(filter(level));
}

/// Opens (or reopens, on SIGHUP) the log file in append mode.
pub fn open_file(path: &str) -> std::io::Result<()> {
    let f = if path == "stdout:" {
        // SAFETY-free alternative to fd 1 ownership: append to /dev/stdout.
        OpenOptions::new().append(true).open("/dev/stdout")?
    } else {
        OpenOptions::new().create(true).append(true).open(path)?
    };
    if let Ok(mut g) = FILE.lock() {
        *g = Some((path.to_string(), f));
    }
    Ok(())
}

pub fn reopen_file() {
    let path = FILE.lock().ok().and_then(|g| g.as_ref().map(|(p, _)| p.clone()));
    if let Some(p) = path {
        if let Err(e) = open_file(&p) {
            log::error!("reopening log file {p}: {e}");
        }
    }
}

/// Takes the queued Log-signal records.
pub fn drain() -> Vec<(u32, String)> {
    QUEUE.lock().map(|mut q| q.drain(..).collect()).unwrap_or_default()
}
