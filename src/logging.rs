//! Logging: env_logger formats to stderr (and the --log-file), and every
//! record at or above the service's log level is queued for a `Log` signal,
//! which the main loop sends (logging itself never touches the bus).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

use log::Level::{self, Debug, Error, Info, Trace, Warn};

/// Queued (category, message) for Log signals; bounded.
static QUEUE: Mutex<VecDeque<(u32, String)>> = Mutex::new(VecDeque::new());
/// The log file: its path, the uid it may belong to besides root, the file.
static FILE: Mutex<Option<(String, Option<u32>, File)>> = Mutex::new(None);
const QUEUE_MAX: usize = 1000;

/// Each `log` level with its OpenVPN 3 log category (`LogCategory`:
/// DEBUG 1 … ERROR 6) and the lowest service log level (0-6, reference
/// semantics) that shows it.
const LEVELS: [(Level, u32, u32); 5] = [(Error, 6, 0), (Warn, 5, 2), (Info, 4, 3), (Debug, 2, 5), (Trace, 1, 6)];

pub fn category(l: Level) -> u32 {
    LEVELS.iter().find(|(x, ..)| *x == l).map_or(4, |(_, c, _)| *c)
}

/// The service log level as a `log` filter.
pub fn filter(level: u32) -> log::LevelFilter {
    let most = LEVELS.iter().rev().find(|(.., min)| *min <= level);
    most.map_or(log::LevelFilter::Error, |(l, ..)| l.to_level_filter())
}

struct Logger {
    stderr: env_logger::Logger,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    /// Only records at or above `log::max_level` get here: the `log`
    /// macros check it before calling the logger.
    fn log(&self, r: &log::Record) {
        if self.stderr.matches(r) {
            self.stderr.log(r);
        }
        let msg = r.args().to_string();
        if let Some((_, _, file)) = FILE.lock().ok().as_mut().and_then(|f| f.as_mut()) {
            let _ = writeln!(file, "{} {msg}", r.level());
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

/// Opens (or reopens, on SIGHUP) the log file in append mode, as
/// `state::open_log` allows (never through a symlink, never a file that
/// someone other than root or the dedicated account `uid` owns or may
/// write). Nothing is chowned.
pub fn open_file(path: &str, uid: Option<u32>) -> std::io::Result<()> {
    let f = if path == "stdout:" {
        OpenOptions::new().append(true).open("/dev/stdout")?
    } else {
        crate::state::open_log(std::path::Path::new(path), uid)?
    };
    if let Ok(mut g) = FILE.lock() {
        *g = Some((path.to_string(), uid, f));
    }
    Ok(())
}

/// SIGHUP: reopens the log file. Once privileges are dropped a root-owned
/// file cannot be reopened; the open one is kept (rotate with copytruncate).
pub fn reopen_file() {
    let cur = FILE.lock().ok().and_then(|g| g.as_ref().map(|(p, u, _)| (p.clone(), *u)));
    if let Some((p, uid)) = cur {
        if let Err(e) = open_file(&p, uid) {
            log::error!("reopening log file {p}: {e}; still writing to the file opened before");
        }
    }
}

/// Takes the queued Log-signal records.
pub fn drain() -> Vec<(u32, String)> {
    QUEUE.lock().map(|mut q| std::mem::take(&mut *q).into()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::LevelFilter as F;

    #[test]
    fn levels_and_categories() {
        let filters = [F::Error, F::Error, F::Warn, F::Info, F::Info, F::Debug, F::Trace, F::Trace];
        assert!((0..8).map(filter).eq(filters));
        assert_eq!([Trace, Debug, Info, Warn, Error].map(category), [1, 2, 4, 5, 6]);
    }
}
