//! Whether the io_uring driver can run here: checked by using, on a
//! throwaway ring, every feature it needs, since a kernel can list an
//! opcode and still refuse its multishot form, and seccomp or
//! `kernel.io_uring_disabled` refuse the ring itself.

use std::io::{self, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use io_uring::{opcode, Probe};

use crate::{Event, Ring, RingError, Sizes};

/// How long the probe waits for each completion it provokes.
const WAIT: Duration = Duration::from_secs(1);

/// Why the io_uring driver cannot run on this host.
#[derive(Debug, thiserror::Error)]
pub enum Unsupported {
    /// The ring could not be set up or its buffers registered.
    #[error("{0} (ENOSYS: a kernel without io_uring; EPERM: the sysctl kernel.io_uring_disabled, or a seccomp filter such as a container's)")]
    Ring(#[from] RingError),
    /// The kernel does not know an operation or feature the driver uses.
    #[error("the kernel lacks {0}")]
    Missing(&'static str),
    /// Using a feature failed.
    #[error("{what}: {err}")]
    Failed { what: &'static str, err: io::Error },
}

/// Checks that io_uring is allowed and has what the driver uses:
/// single-issuer rings with deferred task work, provided-buffer rings,
/// multishot accept and receive, vectored writes, eventfd reads,
/// cancellation by descriptor, and waits with a timeout.
pub fn probe() -> Result<(), Unsupported> {
    let mut ring = Ring::<Vec<u8>>::new(Sizes { entries: 8, buffers: 4, buffer_size: 64 })?;
    if !ring.ring.params().is_feature_ext_arg() {
        return Err(Unsupported::Missing("waits with a timeout (IORING_FEAT_EXT_ARG, 5.11)"));
    }
    let mut opcodes = Probe::new();
    ring.ring.submitter().register_probe(&mut opcodes).map_err(|err| failed("IORING_REGISTER_PROBE", err))?;
    for (code, name) in [
        (opcode::AcceptMulti::CODE, "IORING_OP_ACCEPT"),
        (opcode::RecvMulti::CODE, "IORING_OP_RECV"),
        (opcode::Writev::CODE, "IORING_OP_WRITEV"),
        (opcode::Read::CODE, "IORING_OP_READ"),
        (opcode::AsyncCancel2::CODE, "IORING_OP_ASYNC_CANCEL"),
    ] {
        if !opcodes.is_supported(code) {
            return Err(Unsupported::Missing(name));
        }
    }

    // Multishot accept (5.19): the accept stays armed after a connection.
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|err| failed("a probe listener", err))?;
    let addr = listener.local_addr().map_err(|err| failed("a probe listener", err))?;
    ring.accept_multi(listener.as_raw_fd(), 1).map_err(|err| failed("multishot accept", err))?;
    let _client = TcpStream::connect(addr).map_err(|err| failed("a probe connection", err))?;
    match next(&mut ring)? {
        Event::Accepted { socket: Ok(_), ended: false, .. } => {}
        Event::Accepted { socket: Err(err), .. } => return Err(failed("multishot accept", err)),
        _ => return Err(Unsupported::Missing("multishot accept (5.19)")),
    }

    // Multishot receive into provided buffers (6.0), then a write back.
    let (ours, mut theirs) = UnixStream::pair().map_err(|err| failed("a probe socket pair", err))?;
    ring.recv_multi(ours.as_raw_fd(), 2).map_err(|err| failed("multishot receive", err))?;
    theirs.write_all(b"probe").map_err(|err| failed("a probe write", err))?;
    match next(&mut ring)? {
        Event::Received { result: Ok(Some(received)), ended: false, .. } if received.len == 5 => {
            ring.recycle(received.buffer);
        }
        Event::Received { result: Err(err), .. } => return Err(failed("multishot receive", err)),
        _ => return Err(Unsupported::Missing("multishot receive into a provided-buffer ring (6.0)")),
    }
    ring.write(ours.as_raw_fd(), vec![b"back".to_vec()], 3)
        .map_err(|(_, err)| failed("a vectored write", err))?;
    match next(&mut ring)? {
        Event::Written { result: Ok(4), .. } => {}
        Event::Written { result: Err(err), .. } => return Err(failed("a vectored write", err)),
        _ => return Err(Unsupported::Missing("vectored writes")),
    }

    // Cancellation by descriptor (5.19) ends the armed accept and receive.
    ring.cancel_fd(listener.as_raw_fd()).map_err(|err| failed("cancellation by descriptor", err))?;
    ring.cancel_fd(ours.as_raw_fd()).map_err(|err| failed("cancellation by descriptor", err))?;
    let deadline = Instant::now() + WAIT;
    while ring.in_flight() > 0 {
        if Instant::now() >= deadline {
            return Err(Unsupported::Missing("cancellation by descriptor (5.19)"));
        }
        ring.wait(Some(WAIT)).map_err(|err| failed("a wait", err))?;
        while ring.completion().is_some() {}
    }
    Ok(())
}

/// The next completion, waiting up to [`WAIT`].
fn next(ring: &mut Ring<Vec<u8>>) -> Result<Event<Vec<u8>>, Unsupported> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(event) = ring.completion() {
            return Ok(event);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Unsupported::Failed {
                what: "a probe operation",
                err: io::Error::new(io::ErrorKind::TimedOut, "no completion within a second"),
            });
        }
        ring.wait(Some(left)).map_err(|err| failed("a wait", err))?;
    }
}

fn failed(what: &'static str, err: io::Error) -> Unsupported {
    Unsupported::Failed { what, err }
}
