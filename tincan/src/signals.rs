//! SIGTERM, SIGINT and SIGHUP as events of the mio loop: the signals are blocked and read from
//! a signalfd the loop polls, so nothing runs in a signal handler and no wake-up is lost.
//! SIGTERM and SIGINT stop the loop, which returns, and the TAP goes with the process (it is not
//! persistent, so the kernel also takes it off the bridge). SIGHUP is logged and ignored:
//! tincan has no config of its own to read again; the controller's reload reconfigures it.

use log::info;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::io;
use std::os::fd::{AsRawFd, RawFd};

pub struct Signals {
    fd: SignalFd,
}

/// What the loop does about the signals read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalAction {
    Continue,
    /// Stop; the name of the signal, for the log.
    Stop(&'static str),
}

impl Signals {
    /// Blocks the three signals in this thread (tincan has no other) and opens the signalfd.
    /// Call before anything else could spawn a thread.
    pub fn block() -> io::Result<Signals> {
        let mut mask = SigSet::empty();
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            mask.add(s);
        }
        mask.thread_block().map_err(io::Error::from)?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(io::Error::from)?;
        Ok(Signals { fd })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads every pending signal (the fd is edge-polled).
    pub fn drain(&mut self) -> SignalAction {
        let mut action = SignalAction::Continue;
        while let Ok(Some(info)) = self.fd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGTERM) => action = SignalAction::Stop("SIGTERM"),
                Ok(Signal::SIGINT) => action = SignalAction::Stop("SIGINT"),
                Ok(Signal::SIGHUP) => {
                    info!("SIGHUP: nothing to reload (gvpn-controller holds the config and reconfigures tincan on its reload)")
                }
                _ => {}
            }
        }
        action
    }
}
