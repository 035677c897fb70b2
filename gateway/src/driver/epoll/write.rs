//! Writing: once per turn, every session the hub touched gets one vectored
//! write of its sealed output (again while the socket takes all it is
//! given), or its TLS records; then its write interest and its deadline are
//! updated.

use mio::Token;

use super::{Worker, FIRST_SESSION};
use gateway_hub::Now;

impl Worker {
    /// Queues session `key` for this turn's writes.
    pub(super) fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.hub.conn_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Writes every session the hub touched (or the socket reported
    /// writable). Sessions the hub touches while this runs (a write that
    /// resumed live delivery) are written next turn, which starts at once
    /// ([`gateway_hub::Hub::has_work`]).
    pub(super) fn write_dirty(&mut self, now: Now) {
        while let Some(key) = self.hub.poll_touched() {
            self.mark_dirty(key);
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            self.write(now, key);
        }
        dirty.clear();
        debug_assert!(self.dirty.is_empty(), "nothing marks sessions dirty while writing");
        self.dirty = dirty;
    }

    fn write(&mut self, now: Now, key: usize) {
        self.hub.seal(key);
        loop {
            let Some((conn, outbound)) = self.hub.output(key) else { return };
            conn.dirty = false;
            let written = conn.write_once(outbound, &mut self.tls_out);
            self.metrics.bytes_out.add(written.wire as u64);
            self.hub.handle_written(now, key, written.bytes);
            if written.failed {
                self.hub.handle_peer_gone(now, key);
                return;
            }
            let progress = written.bytes > 0 || written.wire > 0;
            let more = self.hub.output(key).is_some_and(|(conn, outbound)| conn.wants_write(outbound));
            if written.blocked || !progress || !more {
                break;
            }
        }
        let registry = self.poll.registry();
        if let Some((conn, outbound)) = self.hub.output(key) {
            let wanted = conn.wants_write(outbound);
            conn.set_writable_interest(registry, Token(key + FIRST_SESSION), wanted);
        }
        self.reschedule(key);
    }

    /// Schedules session `key`'s next deadline.
    fn reschedule(&mut self, key: usize) {
        let Some(at) = self.hub.poll_session_timeout(key) else { return };
        let Some(conn) = self.hub.conn_mut(key) else { return };
        conn.scheduled = Some(self.deadlines.schedule(key, at, conn.scheduled));
    }
}
