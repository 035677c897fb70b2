//! A worker's wake-up, shared by both drivers: an eventfd that other threads
//! write (a command, a batch, a store answer, the watchdog's round) and the
//! worker's loop watches: the epoll driver registers it with its poll
//! (edge-triggered: each write after the last wake-up is a new event), the
//! io_uring driver keeps a read of it in flight.

use std::io;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd, RawFd};

use rustix::event::{eventfd, EventfdFlags};

/// Wakes one worker's loop.
#[derive(Debug)]
pub(crate) struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Self> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Self { fd })
    }

    /// Wakes the loop (a counter increment: many wakes before the loop runs
    /// are one wake-up).
    pub(crate) fn wake(&self) -> io::Result<()> {
        match rustix::io::write(self.fd.as_fd(), &1u64.to_ne_bytes()) {
            Ok(_) => Ok(()),
            // The counter is full (2^64 - 2 wakes unread): reset it and
            // write again, as mio's eventfd waker does.
            Err(rustix::io::Errno::AGAIN) => {
                self.reset();
                rustix::io::write(self.fd.as_fd(), &1u64.to_ne_bytes()).map(drop).map_err(io::Error::from)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Clears the counter (the epoll driver, which never reads it otherwise,
    /// only on overflow).
    pub(crate) fn reset(&self) {
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(self.fd.as_fd(), &mut counter);
    }

    /// The descriptor the loop watches.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
