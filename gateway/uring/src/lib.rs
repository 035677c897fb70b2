//! A safe io_uring for one gateway worker, on the `io-uring` crate.
//!
//! [`Ring`] owns everything the kernel may touch while an operation is in
//! flight, so its API is safe:
//! - receives go into the ring's provided buffers ([`Ring::recv_multi`]:
//!   one multishot receive per connection, a buffer picked only when bytes
//!   arrive, so an idle connection holds none);
//! - a write owns its pieces (a `Vec<T>`, `T: AsRef<[u8]>`) until its
//!   completion hands them back ([`Event::Written`]);
//! - accepted sockets come back as [`OwnedFd`]s.
//!
//! Each operation but a receive is a slot in a slab (its `user_data`),
//! carrying the caller's `tag` and what the kernel reads; a multishot
//! operation keeps its slot until its last completion. A receive points at
//! nothing of the caller's and carries its tag in `user_data` itself. Dropping the ring cancels what is in flight and waits a
//! moment for it; memory the kernel could still write is then leaked
//! rather than freed.
//!
//! [`probe`] checks, on a throwaway ring, that the kernel, seccomp and
//! `kernel.io_uring_disabled` allow everything the driver needs.

// Maps, registers and hands out the provided buffers.
#[allow(unsafe_code)]
mod bufring;
mod probe;

use std::io;
use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use slab::Slab;

use bufring::BufRing;
pub use probe::{probe, Unsupported};

/// The buffer group of the ring's provided buffers.
const GROUP: u16 = 0;
/// A receive's `user_data` is this bit and the caller's tag: receives have
/// no slot, so a connection's armed receive costs the ring no memory (an
/// idle session costs what it does with epoll).
const RECEIVE: u64 = 1 << 63;
/// The `user_data` of the cancellation a dropped ring sends: no slot's, no
/// receive's.
const DROP_CANCEL: u64 = 1 << 62;
/// How long a dropped ring waits for its cancelled operations.
const DROP_WAIT: Duration = Duration::from_secs(1);

/// The sizes of a ring.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Submission queue entries (the completion queue has twice as many,
    /// and the kernel keeps overflowing completions rather than drop them).
    pub entries: u32,
    /// Provided buffers for receives: a power of two, at most 32,768.
    pub buffers: u16,
    /// Bytes per provided buffer.
    pub buffer_size: u32,
}

/// One operation in flight.
#[derive(Debug)]
struct Op<W> {
    tag: u64,
    kind: Kind<W>,
}

#[derive(Debug)]
enum Kind<W> {
    Accept,
    /// The pieces, and the `iovec`s pointing into them.
    Write(Vec<W>, Vec<libc::iovec>),
    /// An eventfd read into its own 8 bytes.
    Wake {
        _counter: Box<[u8; 8]>,
    },
    Cancel,
}

/// Identifies an operation in flight, to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpId(usize);

/// Bytes a multishot receive put in one provided buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The buffer (read it with [`Ring::buffer_mut`], then
    /// [`Ring::recycle`] it).
    pub buffer: u16,
    /// Bytes in it.
    pub len: usize,
}

/// A completion, as the caller sees it.
#[derive(Debug)]
pub enum Event<W> {
    /// An accept took a connection (or failed); `ended`: the accept is no
    /// longer armed (always, for a single accept).
    Accepted { tag: u64, socket: io::Result<OwnedFd>, ended: bool },
    /// A multishot receive: bytes in a buffer, `Ok(None)` at the end of the
    /// stream, or an error (`ENOBUFS`: the provided buffers ran out);
    /// `ended`: the receive is no longer armed.
    Received { tag: u64, result: io::Result<Option<Received>>, ended: bool },
    /// A write completed: bytes taken, and its pieces back.
    Written { tag: u64, result: io::Result<usize>, buffers: Vec<W> },
    /// The eventfd was read (arm it again with [`Ring::read_wake`]).
    Woken { tag: u64 },
}

/// Setting up or using the ring failed.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// `io_uring_setup` failed (`ENOSYS`: no io_uring or seccomp; `EPERM`:
    /// `kernel.io_uring_disabled`).
    #[error("io_uring_setup: {0}")]
    Setup(io::Error),
    /// Registering the provided buffers failed.
    #[error("registering {buffers} provided buffers: {err}")]
    Buffers { buffers: u16, err: io::Error },
}

/// One worker's ring.
pub struct Ring<W> {
    ring: IoUring,
    ops: Slab<Op<W>>,
    /// Receives armed (they have no slot in `ops`).
    receives: usize,
    buffers: BufRing,
    /// `iovec` vectors of completed writes, kept for the next ones.
    spare_iovecs: Vec<Vec<libc::iovec>>,
}

impl<W> std::fmt::Debug for Ring<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("in_flight", &self.ops.len()).field("buffers", &self.buffers).finish()
    }
}

impl<W: AsRef<[u8]>> Ring<W> {
    /// Sets up a ring (single issuer, task work deferred to the waits) and
    /// registers its provided buffers.
    pub fn new(sizes: Sizes) -> Result<Self, RingError> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(sizes.entries.saturating_mul(2))
            .build(sizes.entries)
            .map_err(RingError::Setup)?;
        let buffers = BufRing::new(&ring, GROUP, sizes.buffers, sizes.buffer_size)
            .map_err(|err| RingError::Buffers { buffers: sizes.buffers, err })?;
        Ok(Self { ring, ops: Slab::new(), receives: 0, buffers, spare_iovecs: Vec::new() })
    }

    /// Operations in flight.
    pub fn in_flight(&self) -> usize {
        self.ops.len() + self.receives
    }

    /// The size of each provided buffer.
    pub fn buffer_size(&self) -> u32 {
        self.buffers.size()
    }

    /// Arms a multishot accept on listener `fd`.
    pub fn accept_multi(&mut self, fd: RawFd, tag: u64) -> io::Result<OpId> {
        let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        let entry = opcode::AcceptMulti::new(Fd(fd)).flags(flags).build();
        self.push(entry, Op { tag, kind: Kind::Accept }).map_err(|(_, err)| err)
    }

    /// Accepts one connection on listener `fd`.
    pub fn accept(&mut self, fd: RawFd, tag: u64) -> io::Result<OpId> {
        let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        let entry =
            opcode::Accept::new(Fd(fd), std::ptr::null_mut(), std::ptr::null_mut()).flags(flags).build();
        self.push(entry, Op { tag, kind: Kind::Accept }).map_err(|(_, err)| err)
    }

    /// Arms a multishot receive on socket `fd` into the provided buffers
    /// (`tag` below 2^62; cancel it with [`Ring::cancel_receive`] or
    /// [`Ring::cancel_fd`]).
    pub fn recv_multi(&mut self, fd: RawFd, tag: u64) -> io::Result<()> {
        if tag >= DROP_CANCEL {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a receive's tag must be below 2^62"));
        }
        // Points at no memory: the kernel picks one of the ring's buffers.
        let entry = opcode::RecvMulti::new(Fd(fd), GROUP).build().user_data(RECEIVE | tag);
        self.push_entry(&entry)?;
        self.receives += 1;
        Ok(())
    }

    /// Writes `pieces` to `fd`, in order, in one vectored write (of the
    /// first [`MAX_SLICES`]; the caller gives no more); gives them back if
    /// the submission fails.
    ///
    /// Why the kernel may read them after this returns: the pieces live in
    /// the `Vec`'s heap buffer, which moves with the `Vec` into the
    /// operation's slot and is neither moved nor touched until the
    /// completion hands it back; each slice is borrowed from a piece (its
    /// own bytes, inline in that buffer, or memory it owns), so it stays
    /// valid while the piece lives unmoved and unchanged.
    pub fn write(&mut self, fd: RawFd, pieces: Vec<W>, tag: u64) -> Result<OpId, (Vec<W>, io::Error)> {
        let mut iovecs = self.spare_iovecs.pop().unwrap_or_default();
        iovecs.clear();
        iovecs.extend(pieces.iter().take(MAX_SLICES).map(|piece| {
            let slice = piece.as_ref();
            libc::iovec { iov_base: slice.as_ptr().cast_mut().cast(), iov_len: slice.len() }
        }));
        let len = u32::try_from(iovecs.len()).unwrap_or(u32::MAX);
        let entry = opcode::Writev::new(Fd(fd), iovecs.as_ptr(), len).build();
        self.push(entry, Op { tag, kind: Kind::Write(pieces, iovecs) }).map_err(|(op, err)| match op.kind {
            Kind::Write(pieces, iovecs) => {
                self.spare_iovecs.push(iovecs);
                (pieces, err)
            }
            _ => unreachable!("push gives back the operation it was given"),
        })
    }

    /// Reads eventfd `fd` (a wake-up) into the operation's own 8 bytes.
    pub fn read_wake(&mut self, fd: RawFd, tag: u64) -> io::Result<OpId> {
        let mut counter = Box::new([0u8; 8]);
        let entry = opcode::Read::new(Fd(fd), counter.as_mut_ptr(), 8).build();
        self.push(entry, Op { tag, kind: Kind::Wake { _counter: counter } }).map_err(|(_, err)| err)
    }

    /// Cancels operation `id` (its completion still comes, as cancelled or
    /// done).
    pub fn cancel(&mut self, id: OpId) -> io::Result<()> {
        let entry = opcode::AsyncCancel2::new(CancelBuilder::user_data(id.0 as u64)).build();
        self.push(entry, Op { tag: 0, kind: Kind::Cancel }).map(drop).map_err(|(_, err)| err)
    }

    /// Cancels the receive armed with `tag` ([`Ring::recv_multi`]). Found
    /// by its `user_data` in the kernel's cancellation hash, where
    /// [`Ring::cancel_fd`] walks every bucket of it (measured at about 2.6 %
    /// of a worker's samples under a handshake flood, every session closing
    /// with its receive armed).
    pub fn cancel_receive(&mut self, tag: u64) -> io::Result<()> {
        let entry = opcode::AsyncCancel2::new(CancelBuilder::user_data(RECEIVE | tag)).build();
        self.push(entry, Op { tag: 0, kind: Kind::Cancel }).map(drop).map_err(|(_, err)| err)
    }

    /// Cancels every operation on `fd`.
    pub fn cancel_fd(&mut self, fd: RawFd) -> io::Result<()> {
        let entry = opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(fd)).all()).build();
        self.push(entry, Op { tag: 0, kind: Kind::Cancel }).map(drop).map_err(|(_, err)| err)
    }

    /// Submits what is queued and waits up to `timeout` (`None`: without
    /// limit) for at least one completion.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let result = match timeout {
            None => self.ring.submit_and_wait(1),
            Some(timeout) => {
                let spec = Timespec::from(timeout);
                self.ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&spec))
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(err) if matches!(err.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The next completion, if one has arrived (cancellations' own are
    /// consumed here).
    pub fn completion(&mut self) -> Option<Event<W>> {
        loop {
            let entry = self.ring.completion().next()?;
            if let Some(event) = self.complete(&entry) {
                return Some(event);
            }
        }
    }

    /// The `len` bytes a receive put in `buffer` (`None` for a buffer not
    /// lent to the caller, or a length past it).
    pub fn buffer_mut(&mut self, buffer: u16, len: usize) -> Option<&mut [u8]> {
        self.buffers.get_mut(buffer, len)
    }

    /// Gives `buffer` back for later receives (once: an id not lent to the
    /// caller is ignored).
    pub fn recycle(&mut self, buffer: u16) {
        self.buffers.recycle(buffer);
    }

    #[allow(unsafe_code)]
    fn complete(&mut self, entry: &cqueue::Entry) -> Option<Event<W>> {
        let flags = entry.flags();
        let more = cqueue::more(flags);
        let result = entry.result();
        if entry.user_data() & RECEIVE != 0 {
            if !more {
                self.receives = self.receives.saturating_sub(1);
            }
            let tag = entry.user_data() & !RECEIVE;
            return Some(Event::Received { tag, result: self.received(result, flags), ended: !more });
        }
        let key = usize::try_from(entry.user_data()).ok()?;
        let op = self.ops.get(key)?;
        let tag = op.tag;
        let event = match &op.kind {
            Kind::Accept => Some(Event::Accepted {
                tag,
                socket: errno(result).map(|_| {
                    // SAFETY: a successful accept's result (`result`, not
                    // negative here) is a new descriptor nothing else owns.
                    unsafe { OwnedFd::from_raw_fd(result) }
                }),
                ended: !more,
            }),
            Kind::Write(..) | Kind::Wake { .. } | Kind::Cancel => None,
        };
        if more {
            return event;
        }
        let op = self.ops.remove(key);
        match op.kind {
            Kind::Write(buffers, iovecs) => {
                self.spare_iovecs.push(iovecs);
                Some(Event::Written { tag, result: errno(result).map(|n| n as usize), buffers })
            }
            Kind::Wake { .. } => Some(Event::Woken { tag }),
            Kind::Cancel => None,
            Kind::Accept => event,
        }
    }

    /// What a receive's completion brought: a lent buffer, the end of the
    /// stream or an error (a buffer it named without bytes goes back).
    fn received(&mut self, result: i32, flags: u32) -> io::Result<Option<Received>> {
        let buffer = cqueue::buffer_select(flags);
        match (errno(result), buffer) {
            (Ok(len), Some(buffer)) if len > 0 => {
                self.buffers.lend(buffer);
                Ok(Some(Received { buffer, len: len as usize }))
            }
            (Ok(0), buffer) => {
                if let Some(buffer) = buffer {
                    self.buffers.give_back(buffer);
                }
                Ok(None)
            }
            (Ok(_), _) => Err(io::Error::other("a receive completed without a buffer")),
            (Err(err), buffer) => {
                if let Some(buffer) = buffer {
                    self.buffers.give_back(buffer);
                }
                Err(err)
            }
        }
    }

    /// Queues `entry` for `op` (submitting what is queued when the queue is
    /// full); gives the operation back if it cannot be queued.
    fn push(&mut self, entry: squeue::Entry, op: Op<W>) -> Result<OpId, (Op<W>, io::Error)> {
        let key = self.ops.insert(op);
        // Whatever the entry points at (iovecs, pieces, the wake counter)
        // is owned by `self.ops[key]`, whose heap memory stays put until the
        // operation's last completion removes it.
        match self.push_entry(&entry.user_data(key as u64)) {
            Ok(()) => Ok(OpId(key)),
            Err(err) => Err((self.ops.remove(key), err)),
        }
    }

    /// Queues `entry`, submitting what is queued when the queue is full.
    /// The caller keeps whatever the entry points at alive and unmoved until
    /// its last completion.
    #[allow(unsafe_code)]
    fn push_entry(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the callers own what the entry points at until its
            // last completion (see `push` and `recv_multi`).
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }
}

impl<W> Drop for Ring<W> {
    /// Cancels what is in flight and waits up to a second for it; what the
    /// kernel still holds after that (buffers it could write, write
    /// buffers it could read) is leaked, never freed under it.
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        if self.ops.is_empty() && self.receives == 0 {
            return;
        }
        let cancel = opcode::AsyncCancel2::new(CancelBuilder::any()).build().user_data(DROP_CANCEL);
        // SAFETY: a cancellation points at no memory.
        if unsafe { self.ring.submission().push(&cancel) }.is_err() {
            // A full queue: submit it, then there is room.
            let _ = self.ring.submit();
            // SAFETY: as above.
            let _ = unsafe { self.ring.submission().push(&cancel) };
        }
        let deadline = Instant::now() + DROP_WAIT;
        while (!self.ops.is_empty() || self.receives > 0) && Instant::now() < deadline {
            let spec = Timespec::from(Duration::from_millis(10));
            let _ = self.ring.submitter().submit_with_args(1, &SubmitArgs::new().timespec(&spec));
            while let Some(entry) = self.ring.completion().next() {
                if cqueue::more(entry.flags()) {
                    continue;
                }
                if entry.user_data() & RECEIVE != 0 {
                    self.receives = self.receives.saturating_sub(1);
                } else {
                    self.ops.try_remove(usize::try_from(entry.user_data()).unwrap_or(usize::MAX));
                }
            }
        }
        if !self.ops.is_empty() || self.receives > 0 {
            std::mem::forget(std::mem::take(&mut self.ops));
            self.buffers.leak();
        }
    }
}

/// Most slices in one write.
pub const MAX_SLICES: usize = 1024;

/// Whether a receive ended because every provided buffer was in use
/// (`ENOBUFS`): arm it again once buffers are back.
pub fn ran_dry(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ENOBUFS)
}

/// Whether an operation ended because it was cancelled (`ECANCELED`).
pub fn cancelled(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ECANCELED)
}

/// A completion's result as a count or an error.
fn errno(result: i32) -> io::Result<u32> {
    u32::try_from(result).map_err(|_| io::Error::from_raw_os_error(result.saturating_neg()))
}
