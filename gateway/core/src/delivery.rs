//! Inbox delivery on one connection: sync windows, then live entries, with
//! the no-gap rule of SPEC §6.3.
//!
//! The store is the truth; this state only decides what to send next so
//! that, on one connection, the client receives inbox entries in strictly
//! increasing seq order with none missing:
//!
//! - `sent` is the highest seq sent on this connection; `acked` the client's
//!   cumulative ACK (an ACK above `sent` is clamped to it).
//! - **Syncing**: reads windows from the store after `sent` (at most two
//!   batches unacknowledged), sends each as SYNC_BATCH, and ends with
//!   SYNC_DONE(`sent`). A live entry that arrives meanwhile is dropped and
//!   marks the sync `missed`, so that it reads once more before SYNC_DONE:
//!   the store committed that entry before announcing it, so the read finds it.
//! - **Live**: an entry with seq `sent + 1` is sent; one at or below `sent`
//!   is a repeat and dropped; one above `sent + 1` means one was lost on the
//!   way (a full worker inbox): back to syncing from `sent`.
//! - **Paused**: the outbound queue refused a live entry (slow reader). Nothing
//!   more goes live; once the queue drains the session syncs from `sent`.
//!
//! Each restart of a sync bumps `epoch`; a store page for an older epoch is
//! ignored, so a restarted sync never sends a stale window.

use protocol::Seq;

/// Where delivery on this connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Not authenticated yet.
    Off,
    /// Replaying the inbox from the store.
    Syncing,
    /// Sending entries as they are stored.
    Live,
    /// The client reads too slowly: live entries wait in the store.
    Paused,
}

/// What the session must do after a delivery event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing.
    Idle,
    /// Ask the store for entries after `after` (this epoch).
    Read { after: Seq, limit: u32, epoch: u8 },
    /// The sync is over: send SYNC_DONE(`head`).
    Done { head: Seq, first: bool },
}

/// What to do with a live entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Live {
    /// Send it (then report the outcome with `sent_live` or `paused`).
    Send,
    /// Drop it: a repeat, or the sync will read it.
    Drop,
    /// Drop it and start syncing: `Step` says what to read.
    Resync(Step),
}

/// Per-connection delivery state (kept small: every session has one).
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    acked: u64,
    sent: u64,
    /// Last seq of each SYNC_BATCH not yet covered by an ACK (0: free slot).
    batch_ends: [u64; 2],
    mode: Mode,
    epoch: u8,
    /// A store read is outstanding.
    reading: bool,
    /// More entries may wait in the store after `sent`.
    more: bool,
    /// A live entry was dropped during the current read.
    missed: bool,
    /// SYNC_DONE was sent at least once on this connection.
    synced_once: bool,
    /// Entries per SYNC_BATCH.
    window: u16,
}

impl Delivery {
    pub(crate) fn new() -> Self {
        Self {
            acked: 0,
            sent: 0,
            batch_ends: [0; 2],
            mode: Mode::Off,
            epoch: 0,
            reading: false,
            more: false,
            missed: false,
            synced_once: false,
            window: protocol::limits::MAX_SYNC_BATCH as u16,
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    pub(crate) fn acked(&self) -> Seq {
        Seq(self.acked)
    }

    pub(crate) fn sent(&self) -> Seq {
        Seq(self.sent)
    }

    /// Authenticated: sync after `resume_after`, which the client has acked.
    ///
    /// The sync reads the store at least once, even when the inbox head the
    /// store reported at login says there is nothing after `resume_after`:
    /// that head was read before the session could be found (in the node's
    /// directory, in the fleet's registry), and an entry stored in between
    /// was announced to nobody. Only a read made from here on finds it.
    pub(crate) fn start(&mut self, resume_after: Seq, window: u32) -> Step {
        self.acked = resume_after.0;
        self.sent = resume_after.0;
        self.set_window(window);
        self.restart([0; 2])
    }

    /// SYNC_REQUEST: restart the sync from `after` (entries at or below the
    /// acked cursor are gone, so never from below it). `unwritten`: output
    /// queued before the request has not all been written to the socket.
    pub(crate) fn sync_request(&mut self, after: Seq, window: u32, unwritten: bool) -> Step {
        if self.mode == Mode::Off {
            return Step::Idle;
        }
        self.sent = after.0.max(self.acked);
        self.set_window(window);
        // Batches the client may have read and discarded (what SYNC_REQUEST is
        // for) give their slots back. While output is still queued, the
        // batches keep them until acked or written (`written_out`): freeing
        // them let a client that repeats SYNC_REQUEST and never reads have
        // two more windows queued each time (SPEC §6.3: two at most).
        let held = if unwritten { self.batch_ends } else { [0; 2] };
        self.restart(held)
    }

    /// Everything queued for the client has been written: batches held over
    /// a SYNC_REQUEST (their ends above the restarted sync's position) or
    /// acked while unwritten give their slots back.
    pub(crate) fn written_out(&mut self) -> Step {
        let mut freed = false;
        for end in &mut self.batch_ends {
            if *end != 0 && (*end > self.sent || *end <= self.acked) {
                *end = 0;
                freed = true;
            }
        }
        if freed {
            self.advance()
        } else {
            Step::Idle
        }
    }

    /// The client's cumulative ACK. Returns the new acked cursor when it moved
    /// (to tell the store), and the next step of a sync waiting on it.
    /// `unwritten`: output is still queued, so the batches it acks may not
    /// have reached the client: their slots are given back once everything
    /// is written (`written_out`), not before. A client acking what it has
    /// not read would otherwise have a third window, and more, queued.
    pub(crate) fn ack(&mut self, up_to: Seq, unwritten: bool) -> (Option<Seq>, Step) {
        // Clamped to the highest seq sent on this connection: after a
        // SYNC_REQUEST lowered `sent`, the batches sent before it are still
        // acked by their seqs, and the sync goes on after what is acked.
        let highest = self.batch_ends.iter().fold(self.sent, |max, end| max.max(*end));
        let up_to = up_to.0.min(highest);
        let moved = (up_to > self.acked).then(|| {
            self.acked = up_to;
            self.sent = self.sent.max(up_to);
            Seq(up_to)
        });
        if !unwritten {
            for end in &mut self.batch_ends {
                if *end <= up_to {
                    *end = 0;
                }
            }
        }
        (moved, self.advance())
    }

    /// A store page for `epoch`: the entries' seqs (in order) are about to be
    /// sent as one SYNC_BATCH when this returns true.
    pub(crate) fn page(&mut self, epoch: u8, last: Option<Seq>, remaining: u64) -> (bool, Step) {
        if epoch != self.epoch || self.mode != Mode::Syncing || !self.reading {
            return (false, Step::Idle);
        }
        self.reading = false;
        self.more = remaining > 0 || std::mem::take(&mut self.missed);
        let send = match last {
            Some(last) if last.0 > self.sent => {
                self.sent = last.0;
                if let Some(slot) = self.batch_ends.iter_mut().find(|end| **end == 0) {
                    *slot = last.0;
                }
                true
            }
            _ => false,
        };
        (send, self.advance())
    }

    /// A live entry with `seq` was stored for this device.
    pub(crate) fn live(&mut self, seq: Seq) -> Live {
        match self.mode {
            Mode::Off | Mode::Paused => Live::Drop,
            Mode::Syncing => {
                if seq.0 > self.sent {
                    self.missed = true;
                    self.more = true;
                }
                match self.advance() {
                    Step::Idle => Live::Drop,
                    step => Live::Resync(step),
                }
            }
            Mode::Live if seq.0 <= self.sent => Live::Drop,
            Mode::Live if seq.0 == self.sent + 1 => Live::Send,
            Mode::Live => Live::Resync(self.restart(self.batch_ends)),
        }
    }

    /// The live entry `Live::Send` allowed was queued.
    pub(crate) fn sent_live(&mut self, seq: Seq) {
        self.sent = self.sent.max(seq.0);
    }

    /// The outbound queue refused a live entry: stop live delivery.
    pub(crate) fn pause(&mut self) {
        if matches!(self.mode, Mode::Live | Mode::Syncing) {
            self.mode = Mode::Paused;
        }
    }

    /// The outbound queue drained: a paused session syncs from `sent`.
    pub(crate) fn resume(&mut self) -> Step {
        match self.mode {
            Mode::Paused => self.restart(self.batch_ends),
            _ => Step::Idle,
        }
    }

    /// Entries may have been stored that live delivery never announced here
    /// (this node could not be found by others for a while): a live session
    /// syncs from `sent`, a syncing one reads once more before it is done.
    pub(crate) fn catch_up(&mut self) -> Step {
        match self.mode {
            Mode::Live => self.restart(self.batch_ends),
            Mode::Syncing => {
                self.missed = true;
                self.more = true;
                self.advance()
            }
            Mode::Off | Mode::Paused => Step::Idle,
        }
    }

    /// Starts (or restarts) a sync from `sent`, with `batch_ends` the batches
    /// that keep their slots. A sync the server starts on its own (a live
    /// gap, a drained pause, a catch-up) keeps every batch not yet acked:
    /// SYNC_DONE may have gone out with two batches still unacknowledged, and
    /// freeing their slots then would queue a third and a fourth window
    /// (SPEC §6.3: two at most). Only a new session and SYNC_REQUEST, where
    /// the client discarded what it had, start with free slots.
    fn restart(&mut self, batch_ends: [u64; 2]) -> Step {
        self.mode = Mode::Syncing;
        self.epoch = self.epoch.wrapping_add(1);
        self.batch_ends = batch_ends;
        self.reading = false;
        self.missed = false;
        self.more = true;
        self.advance()
    }

    /// The next step of a sync: read if there may be more and a batch slot is
    /// free, finish if there is nothing more.
    fn advance(&mut self) -> Step {
        if self.mode != Mode::Syncing || self.reading {
            return Step::Idle;
        }
        if !self.more {
            self.mode = Mode::Live;
            let first = !std::mem::replace(&mut self.synced_once, true);
            return Step::Done { head: Seq(self.sent), first };
        }
        if self.batch_ends.iter().all(|end| *end != 0) {
            return Step::Idle;
        }
        self.reading = true;
        Step::Read { after: Seq(self.sent), limit: u32::from(self.window), epoch: self.epoch }
    }

    fn set_window(&mut self, window: u32) {
        let max = protocol::limits::MAX_SYNC_BATCH as u32;
        let window = if window == 0 || window > max { max } else { window };
        self.window = u16::try_from(window).unwrap_or(u16::MAX);
    }
}
