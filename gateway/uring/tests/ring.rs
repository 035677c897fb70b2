//! The ring against this machine's kernel, over real sockets.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::{ErrorKind, Read as _, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use gateway_uring::{probe, Event, Ring, Sizes};

fn next(ring: &mut Ring<Vec<u8>>) -> Event<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(event) = ring.completion() {
            return event;
        }
        assert!(Instant::now() < deadline, "no completion within 5 s");
        ring.wait(Some(Duration::from_millis(100))).unwrap();
    }
}

#[test]
fn the_probe_finds_everything_the_driver_needs_on_this_kernel() {
    // Kernel 6.x with io_uring allowed: a failure here is a real one.
    probe().unwrap();
}

/// Two 16-byte buffers and 64 bytes sent: the receive fills both, then
/// ends with ENOBUFS; once the buffers are back, a new receive gets the rest,
/// in order: the ring running dry slows a connection down, loses nothing.
#[test]
fn receives_that_run_out_of_buffers_end_and_resume_without_losing_bytes() {
    let mut ring = Ring::<Vec<u8>>::new(Sizes { entries: 8, buffers: 2, buffer_size: 16 }).unwrap();
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    let sent: Vec<u8> = (0..64u8).collect();
    theirs.write_all(&sent).unwrap();
    ring.recv_multi(ours.as_raw_fd(), 7).unwrap();
    let mut got = Vec::new();
    let mut held = Vec::new();
    let mut dry = 0;
    while got.len() < sent.len() {
        match next(&mut ring) {
            Event::Received { tag: 7, result: Ok(Some(received)), ended } => {
                got.extend_from_slice(ring.buffer_mut(received.buffer, received.len).unwrap());
                held.push(received.buffer);
                if ended {
                    // A multishot receive may end with its last buffer.
                    ring.recv_multi(ours.as_raw_fd(), 7).unwrap();
                }
            }
            Event::Received { tag: 7, result: Err(err), ended: true } => {
                assert_eq!(err.raw_os_error(), Some(libc::ENOBUFS), "{err}");
                dry += 1;
                for buffer in held.drain(..) {
                    ring.recycle(buffer);
                }
                ring.recv_multi(ours.as_raw_fd(), 7).unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, sent);
    assert!(dry >= 1, "64 bytes through two 16-byte buffers must run the ring dry");
    assert!(ring.buffer_mut(2, 1).is_none(), "no buffer 2 in a ring of two");
    for buffer in held.drain(..) {
        ring.recycle(buffer);
        assert!(ring.buffer_mut(buffer, 1).is_none(), "a recycled buffer is the kernel's again");
    }
}

/// A write the peer does not read stays in flight; cancelling it gives its
/// buffers back with ECANCELED.
#[test]
fn a_cancelled_write_comes_back_with_its_buffers() {
    let mut ring = Ring::<Vec<u8>>::new(Sizes { entries: 8, buffers: 2, buffer_size: 16 }).unwrap();
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let chunk = vec![1u8; 64 * 1024];
    loop {
        match ours.write(&chunk) {
            Ok(_) => {}
            Err(err) if err.kind() == ErrorKind::WouldBlock => break,
            Err(err) => panic!("{err}"),
        }
    }
    let id = ring.write(ours.as_raw_fd(), vec![vec![2u8; 4096]], 9).map_err(|(_, err)| err).unwrap();
    ring.wait(Some(Duration::from_millis(50))).unwrap();
    assert!(ring.completion().is_none(), "the socket is full: the write waits");
    ring.cancel(id).unwrap();
    match next(&mut ring) {
        Event::Written { tag: 9, result: Err(err), buffers } => {
            assert_eq!(err.raw_os_error(), Some(libc::ECANCELED), "{err}");
            assert_eq!(buffers, vec![vec![2u8; 4096]]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(ring.in_flight(), 0);
    drop(theirs);
}

/// The end of the stream is a receive of nothing, and ends the receive.
#[test]
fn the_peer_closing_ends_the_receive() {
    let mut ring = Ring::<Vec<u8>>::new(Sizes { entries: 8, buffers: 2, buffer_size: 16 }).unwrap();
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    ring.recv_multi(ours.as_raw_fd(), 3).unwrap();
    theirs.write_all(b"bye").unwrap();
    drop(theirs);
    let mut got = Vec::new();
    loop {
        match next(&mut ring) {
            Event::Received { result: Ok(Some(received)), .. } => {
                got.extend_from_slice(ring.buffer_mut(received.buffer, received.len).unwrap());
                ring.recycle(received.buffer);
            }
            Event::Received { result: Ok(None), ended, .. } => {
                assert!(ended);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, b"bye");
    assert_eq!(ring.in_flight(), 0);
    let mut rest = Vec::new();
    let _ = (&ours).read_to_end(&mut rest);
}

/// A receive cancelled by its tag ends with ECANCELED and leaves the other
/// connection's receive armed: the cancellation finds that one operation.
#[test]
fn a_receive_cancelled_by_its_tag_ends_alone() {
    let mut ring = Ring::<Vec<u8>>::new(Sizes { entries: 8, buffers: 2, buffer_size: 16 }).unwrap();
    let (ours, _theirs) = UnixStream::pair().unwrap();
    let (other, mut other_peer) = UnixStream::pair().unwrap();
    ring.recv_multi(ours.as_raw_fd(), 5).unwrap();
    ring.recv_multi(other.as_raw_fd(), 6).unwrap();
    ring.wait(Some(Duration::from_millis(20))).unwrap();
    assert!(ring.completion().is_none(), "nothing sent yet");
    ring.cancel_receive(5).unwrap();
    match next(&mut ring) {
        Event::Received { tag: 5, result: Err(err), ended: true } => {
            assert_eq!(err.raw_os_error(), Some(libc::ECANCELED), "{err}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(ring.in_flight(), 1, "the other receive is still armed");
    other_peer.write_all(b"hi").unwrap();
    match next(&mut ring) {
        Event::Received { tag: 6, result: Ok(Some(received)), ended: false } => {
            assert_eq!(ring.buffer_mut(received.buffer, received.len).unwrap(), b"hi");
            ring.recycle(received.buffer);
        }
        other => panic!("unexpected {other:?}"),
    }
}
