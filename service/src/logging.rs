//! Log lines on stderr, one per event, each with its level. On a terminal or in a file:
//! `[2026-01-01T10:00:00.123Z INFO  gvpn_controller::controller] message` (env_logger's form).
//! Under systemd, whose journal sets `$JOURNAL_STREAM` on the daemon's stderr and stamps each
//! line with the time itself: `<6>gvpn_controller::controller: message`, the `<N>` prefix
//! being the sd-daemon(3) syslog priority, which journald strips and keeps as the level.

use log::{Level, LevelFilter};
use std::io::Write;

/// The sd-daemon(3) priority of a level: err 3, warning 4, info 6, debug 7.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Whether stderr goes to the journal: `$JOURNAL_STREAM` ("device:inode") names the stream,
/// and stderr is still that stream (a shell started from a service may have redirected it).
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// Starts logging. `spec`, when given (the daemons pass `$RUST_LOG`), is an env_logger filter
/// and fixed; otherwise everything up to `level` is logged, and [`set_level`] changes that at
/// run time (a reload).
pub fn init(spec: Option<&str>, level: LevelFilter) {
    let mut b = env_logger::Builder::new();
    if stderr_is_journal() {
        b.format(|f, record| {
            writeln!(
                f,
                "<{}>{}: {}",
                priority(record.level()),
                record.target(),
                record.args()
            )
        });
    } else {
        b.format_timestamp_millis();
    }
    match spec {
        Some(spec) => {
            b.parse_filters(spec);
            b.init();
        }
        None => {
            // The filter lets everything through; the `log` crate's max level does the
            // filtering, so that a reload can move it.
            b.filter_level(LevelFilter::Trace);
            b.init();
            log::set_max_level(level);
        }
    }
}

/// The level from now on (after [`init`] without a spec).
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_those_of_sd_daemon() {
        assert_eq!(priority(Level::Error), 3);
        assert_eq!(priority(Level::Warn), 4);
        assert_eq!(priority(Level::Info), 6);
        assert_eq!(priority(Level::Debug), 7);
        assert_eq!(priority(Level::Trace), 7);
    }
}
