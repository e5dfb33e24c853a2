//! What both IPOP daemons need to run as services under systemd (or any supervisor):
//!
//! - [`notify`]: the sd_notify protocol (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=`),
//!   one datagram to `$NOTIFY_SOCKET`;
//! - [`logging`]: one line per event on stderr with a level; under journald (`$JOURNAL_STREAM`)
//!   each line starts with its `<N>` syslog priority, so the journal keeps the level;
//! - [`man`]: a binary's man page from its clap definition, so the page cannot drift from the
//!   command line;
//! - [`privileges`]: after start-up, an unprivileged user with `CAP_NET_ADMIN` only;
//! - [`private_file`]: keys are read only from files that no one else owns, reads or links to.

pub mod logging;
pub mod man;
pub mod notify;
pub mod private_file;
pub mod privileges;
