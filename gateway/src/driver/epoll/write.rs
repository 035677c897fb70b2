//! Writing: once per turn, every session the hub touched gets one vectored
//! write of its sealed output (again while the socket takes all it is
//! given), or its TLS records; then its write interest and its deadline are
//! updated.

use mio::Token;

use super::{Worker, FIRST_SESSION};
use crate::driver::worker::DriverConn as _;
use gateway_hub::Now;

impl Worker {
    /// Writes every session the hub touched (or the socket reported
    /// writable). Sessions the hub touches while this runs (a write that
    /// resumed live delivery) are written next turn, which starts at once
    /// ([`gateway_hub::Hub::has_work`]).
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
        loop {
            let Some((conn, outbound)) = hub.output(key) else { return };
            conn.set_dirty(false);
            let written = conn.write_once(outbound, &mut self.tls_out);
            self.core.metrics.bytes_out.add(written.wire as u64);
            hub.handle_written(now, key, written.bytes);
            if written.failed {
                hub.handle_peer_gone(now, key);
                return;
            }
            let progress = written.bytes > 0 || written.wire > 0;
            let more = hub.output(key).is_some_and(|(conn, outbound)| conn.wants_write(outbound));
            if written.blocked || !progress || !more {
                break;
            }
        }
        let registry = self.poll.registry();
        if let Some((conn, outbound)) = hub.output(key) {
            let wanted = conn.wants_write(outbound);
            conn.set_writable_interest(registry, Token(key + FIRST_SESSION), wanted);
        }
        self.core.reschedule(key);
    }
}
