//! Reading and writing on the ring: receive completions into the sessions,
//! one write per session in flight, and closed sessions' last writes once
//! their operations have ended.

use std::io;

use gateway_admin::HandshakeFailure;
use gateway_hub::Now;
use gateway_uring::Received;

use super::conn::{self, Out, Piece};
use super::Running;
use crate::driver::stream::{Absorbed, MAX_IOV};
use crate::driver::worker::DriverConn as _;

impl Running {
    /// A receive completion for connection `tag`.
    pub(super) fn on_receive(
        &mut self,
        now: Now,
        tag: u64,
        result: io::Result<Option<Received>>,
        ended: bool,
    ) {
        let (key, generation) = conn::untag(tag);
        let live = self.core.hub.conn_mut(key).filter(|conn| conn.generation == generation);
        let Some(conn) = live else {
            // A closed connection's: its buffer goes back, and once its
            // receive has ended it may be done.
            if let Ok(Some(received)) = result {
                self.ring.recycle(received.buffer);
            }
            if ended {
                if let Some(closed) = self.closing.get_mut(&tag) {
                    closed.conn.set_receiving(false);
                }
                self.finish_closing(tag);
            }
            return;
        };
        if ended {
            conn.set_receiving(false);
        }
        match result {
            Ok(Some(received)) => {
                let core = &mut self.core;
                let Some(conn) = core.hub.conn_mut(key) else { return };
                conn.layer.begin_input(&mut core.input);
                let absorbed = match self.ring.buffer_mut(received.buffer, received.len) {
                    Some(bytes) => conn.layer.absorb(bytes, &mut core.input),
                    None => Absorbed::Failed { handshaking: false },
                };
                self.ring.recycle(received.buffer);
                core.metrics.bytes_in.add(received.len as u64);
                // A read may leave TLS records to write (the handshake) even
                // when no plaintext reached the session.
                core.mark_dirty(key);
                core.deliver_input(now, key);
                match absorbed {
                    Absorbed::Input if ended => self.rearm.push(key),
                    Absorbed::Input => {}
                    Absorbed::PeerClosed => core.hub.handle_peer_gone(now, key),
                    Absorbed::Failed { handshaking } => {
                        if handshaking {
                            core.metrics.handshake_failures.inc(HandshakeFailure::Tls);
                        }
                        core.hub.handle_peer_gone(now, key);
                    }
                }
            }
            // The end of the stream.
            Ok(None) => self.core.hub.handle_peer_gone(now, key),
            Err(err) if gateway_uring::ran_dry(&err) => {
                // Every buffer was in use: read again once they are back
                // (at the end of this turn); the bytes wait in the socket.
                self.core.metrics.uring_buffers_dry.inc();
                self.rearm.push(key);
            }
            Err(_) => self.core.hub.handle_peer_gone(now, key),
        }
    }

    /// Arms the receives that ended this turn again.
    pub(super) fn rearm_receives(&mut self, now: Now) {
        for key in std::mem::take(&mut self.rearm) {
            let Some(conn) = self.core.hub.conn_mut(key) else { continue };
            if conn.receiving() {
                continue;
            }
            let tag = conn::tag(key, conn.generation);
            match self.ring.recv_multi(conn.fd(), tag) {
                Ok(_) => conn.set_receiving(true),
                Err(err) => {
                    tracing::warn!(%err, "arming a receive");
                    self.core.hub.handle_peer_gone(now, key);
                }
            }
        }
    }

    /// Writes every session the hub touched that has no write in flight:
    /// one write each, of the front of its output. Sessions with a write in
    /// flight are written when it completes.
    pub(super) fn write_dirty(&mut self, now: Now) {
        let dirty = self.core.take_dirty();
        for &key in &dirty {
            self.write(now, key);
        }
        self.core.written(dirty);
    }

    fn write(&mut self, now: Now, key: usize) {
        let hub = &mut self.core.hub;
        hub.seal(key);
        let Some((conn, outbound)) = hub.output(key) else { return };
        conn.set_dirty(false);
        if conn.sending() || !conn.layer.wants_write(outbound) {
            self.core.reschedule(key);
            return;
        }
        let mut out = self.spare.pieces();
        if conn.layer.is_tls() {
            let mut records = self.spare.records();
            let Ok(encrypted) = conn.layer.next_records(outbound, &mut records) else {
                self.spare.keep(out);
                hub.handle_peer_gone(now, key);
                return;
            };
            // Encrypted is as good as written for the session: the records
            // are the connection's now.
            hub.handle_written(now, key, encrypted);
            out.push(Piece::Records(records));
        } else {
            chunks_of(outbound, &mut out);
        }
        if conn::out_len(&out) == 0 {
            self.spare.keep(out);
            self.core.reschedule(key);
            return;
        }
        let Some(conn) = self.core.hub.conn_mut(key) else { return };
        match self.ring.write(conn.fd(), out, conn::tag(key, conn.generation)) {
            Ok(_) => {
                conn.set_sending(true);
                self.writes += 1;
            }
            Err((out, err)) => {
                tracing::warn!(%err, "submitting a write");
                self.spare.keep(out);
                self.core.hub.handle_peer_gone(now, key);
            }
        }
        self.core.reschedule(key);
    }

    /// A write completion for connection `tag`.
    pub(super) fn on_written(&mut self, now: Now, tag: u64, result: io::Result<usize>, out: Out) {
        self.writes = self.writes.saturating_sub(1);
        let (key, generation) = conn::untag(tag);
        let live = self.core.hub.conn_mut(key).filter(|conn| conn.generation == generation);
        let Some(conn) = live else {
            self.last_write(tag, result, out);
            return;
        };
        conn.set_sending(false);
        match result {
            Ok(written) if written > 0 => {
                self.core.metrics.bytes_out.add(written as u64);
                match out.first() {
                    // What the socket did not take goes before any record
                    // made while the write was in flight (an alert).
                    Some(Piece::Records(records)) => {
                        conn.layer.keep_unsent_front(records.get(written..).unwrap_or_default());
                    }
                    _ => self.core.hub.handle_written(now, key, written),
                }
                self.core.mark_dirty(key);
            }
            // Nothing taken of a non-empty write, or an error: the peer is
            // gone.
            _ => self.core.hub.handle_peer_gone(now, key),
        }
        self.spare.keep(out);
    }

    /// Sessions the hub has finished with: a last write and the socket
    /// closed now, or, while a write or receive is in flight, those
    /// cancelled and the session kept in `closing` until they end.
    pub(super) fn reap_closed(&mut self) {
        let mut reaped = false;
        while let Some(mut closed) = self.core.hub.poll_closed() {
            reaped = true;
            self.core.metrics.sessions_open.dec();
            closed.session.flush();
            let conn = &mut closed.conn;
            if !conn.sending() {
                // Best effort: the close frame or HTTP answer (and under TLS
                // an alert or close_notify), if the socket takes it.
                conn.layer.write_last(
                    &mut conn.socket,
                    closed.session.outbound(),
                    0,
                    &[],
                    &mut self.last_out,
                );
            }
            if !conn.sending() && !conn.receiving() {
                continue;
            }
            let tag = conn::tag(closed.key, conn.generation);
            // A write in flight has no handle here: everything on the
            // socket goes. The usual case, a receive alone, is cancelled by
            // its tag (cheaper in the kernel).
            let _ =
                if conn.sending() { self.ring.cancel_fd(conn.fd()) } else { self.ring.cancel_receive(tag) };
            self.closing.insert(tag, closed);
        }
        if reaped {
            self.check_capacity();
        }
    }

    /// The write in flight when session `tag` closed has ended: what it did
    /// not take and the session's last output go now, best effort.
    fn last_write(&mut self, tag: u64, result: io::Result<usize>, out: Out) {
        if let Some(closed) = self.closing.get_mut(&tag) {
            let written = result.unwrap_or(0);
            let conn = &mut closed.conn;
            conn.set_sending(false);
            let outbound = closed.session.outbound();
            match out.first() {
                Some(Piece::Records(records)) => {
                    let rest = records.get(written..).unwrap_or_default();
                    conn.layer.write_last(&mut conn.socket, outbound, 0, rest, &mut self.last_out);
                }
                _ => conn.layer.write_last(&mut conn.socket, outbound, written, &[], &mut self.last_out),
            }
            self.finish_closing(tag);
        }
        self.spare.keep(out);
    }

    /// Drops (and so closes) closed session `tag` once nothing of it is in
    /// flight.
    fn finish_closing(&mut self, tag: u64) {
        if self.closing.get(&tag).is_some_and(|closed| !closed.conn.sending() && !closed.conn.receiving()) {
            self.closing.remove(&tag);
        }
    }
}

/// Appends the front of `outbound` to `out` as owned pieces, for one write.
fn chunks_of(outbound: &gateway_core::Outbound, out: &mut Out) {
    outbound.owned_chunks(&mut Chunks(out), MAX_IOV);
}

/// Takes a session's owned chunks straight into a write's pieces.
struct Chunks<'a>(&'a mut Out);

impl Extend<gateway_core::OwnedChunk> for Chunks<'_> {
    fn extend<I: IntoIterator<Item = gateway_core::OwnedChunk>>(&mut self, chunks: I) {
        self.0.extend(chunks.into_iter().map(Piece::Chunk));
    }
}
