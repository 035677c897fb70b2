//! Output for sessions other than the one being handled: live inbox entries,
//! receipts, presence, typing and prekey notices, batched per destination
//! worker and sent once per loop turn (one channel send and one wake-up per
//! worker per turn, not per message).
//!
//! This worker's own share is applied at the end of the turn too, never in
//! the middle of another session's call. A batch a full inbox refuses stays
//! queued for the next turn; beyond [`MAX_PENDING`] entries for one worker
//! the oldest are shed and counted (`drops{reason="inbox_full"}`): a shed live
//! entry is not lost, its device finds the gap at its next entry, or at its
//! next sync, and reads it from the store.

use std::time::Instant;

use backend_push::PushNote;
use backend_store::{Delivery, Message, ReceiptNote};
use gateway_admin::DropReason;
use gateway_core::{Class, SharedDeliver};
use protocol::{Capabilities, Conversation, Deliver, DeviceId, Frame, Payload, Receipt, Seq, UserId};

use super::{Command, Worker};
use crate::directory::SessionRef;

/// Entries one worker may hold for another before shedding.
const MAX_PENDING: usize = 1 << 16;

/// Something for one session, possibly on another worker.
#[derive(Debug)]
pub(crate) enum Remote {
    /// A live inbox entry.
    Live {
        /// The recipient session.
        to: SessionRef,
        /// The entry's seq in that device's inbox.
        seq: Seq,
        /// The DELIVER, encoded once for every recipient.
        deliver: SharedDeliver,
    },
    /// Any other frame.
    Frame {
        /// The recipient session.
        to: SessionRef,
        /// The frame.
        frame: Frame,
        /// Its outbound class (ephemeral frames go first under pressure).
        class: Class,
    },
}

impl Remote {
    fn to(&self) -> SessionRef {
        match self {
            Self::Live { to, .. } | Self::Frame { to, .. } => *to,
        }
    }
}

/// The capability a frame needs the client to have asked for, if any.
fn needs(frame: &Frame) -> Option<Capabilities> {
    match frame {
        Frame::Receipt(_) => Some(Capabilities::RECEIPTS),
        Frame::Presence(_) => Some(Capabilities::PRESENCE),
        Frame::TypingNotify(_) => Some(Capabilities::TYPING),
        _ => None,
    }
}

impl Worker {
    /// Queues `item` for its session's worker (sent at the end of the turn).
    pub(super) fn post(&mut self, item: Remote) {
        let worker = item.to().worker;
        if let Some(queue) = self.outgoing.get_mut(worker) {
            if queue.len() >= MAX_PENDING {
                queue.remove(0);
                self.metrics.drops.inc(DropReason::InboxFull);
            }
            queue.push(item);
        }
    }

    /// Queues `frame` for `to`.
    pub(super) fn post_frame(&mut self, to: SessionRef, frame: Frame, class: Class) {
        self.post(Remote::Frame { to, frame, class });
    }

    /// Sends every other worker its batch and applies this worker's own.
    pub(super) fn flush_outgoing(&mut self, now: Instant) {
        for worker in 0..self.outgoing.len() {
            if worker == self.index {
                continue;
            }
            let Some(queue) = self.outgoing.get_mut(worker) else { continue };
            if queue.is_empty() {
                continue;
            }
            let Some((sender, waker)) = self.shared.inboxes.get(worker) else { continue };
            let batch = std::mem::take(queue);
            match sender.try_send(Command::Remote(batch)) {
                Ok(()) => {
                    let _ = waker.wake();
                }
                // Kept for the next turn (the loop wakes by then: a deadline or
                // input; a bounded poll timeout guarantees it).
                Err(err) => {
                    if let Command::Remote(batch) = err.into_inner() {
                        if let Some(queue) = self.outgoing.get_mut(worker) {
                            *queue = batch;
                        }
                    }
                    self.retry_outgoing = true;
                }
            }
        }
        let own = self.outgoing.get_mut(self.index).map(std::mem::take).unwrap_or_default();
        self.apply(now, own);
    }

    /// Hands each item to its session on this worker (if it is still there).
    pub(super) fn apply(&mut self, now: Instant, items: Vec<Remote>) {
        for item in items {
            let to = item.to();
            if to.worker != self.index {
                continue;
            }
            let Some(conn) = self.conns.get(to.key) else { continue };
            if conn.generation != to.generation {
                continue;
            }
            let ran = match item {
                Remote::Live { seq, deliver, .. } => {
                    self.call(now, to.key, |conn, ctx| conn.session.deliver_live(ctx, seq, &deliver))
                }
                Remote::Frame { frame, class, .. } => {
                    if needs(&frame).is_some_and(|capability| !conn.wants(capability)) {
                        continue;
                    }
                    self.call(now, to.key, |conn, ctx| {
                        let _ = conn.session.send(ctx, &frame, class);
                    })
                }
            };
            if ran.is_some() {
                self.after(now, to.key);
            }
        }
    }
}

impl Worker {
    /// Delivers a stored message's inbox entries: live to connected devices
    /// (the DELIVER encoded once per conversation view), a push note for the
    /// others.
    pub(super) fn fanout(&mut self, message: &Message, deliveries: &[Delivery]) {
        let mut views: Vec<(Conversation, SharedDeliver)> = Vec::with_capacity(2);
        let mut devices = std::mem::take(&mut self.devices);
        let mut current = None;
        for delivery in deliveries {
            if current != Some(delivery.user) {
                self.shared.directory.devices(delivery.user, &mut devices);
                current = Some(delivery.user);
            }
            let session = devices.iter().find(|(device, _)| *device == delivery.device).map(|(_, s)| *s);
            let Some(to) = session else {
                self.shared.backend.push.notify(PushNote {
                    user: delivery.user,
                    device: delivery.device,
                    seq: delivery.seq,
                    conversation: delivery.conversation,
                    sender: message.sender,
                });
                continue;
            };
            let deliver = match views.iter().find(|(view, _)| *view == delivery.conversation) {
                Some((_, shared)) => shared.clone(),
                None => {
                    let shared = SharedDeliver::new(&deliver_of(delivery, message));
                    views.push((delivery.conversation, shared.clone()));
                    shared
                }
            };
            self.post(Remote::Live { to, seq: delivery.seq, deliver });
        }
        self.devices = devices;
    }

    /// Sends each cursor move to the devices of the user who must hear it.
    pub(super) fn receipts(&mut self, notes: &[ReceiptNote]) {
        for note in notes {
            self.post_to_user(note.to, note.except, &receipt_frame(note), Class::Live);
        }
    }

    /// Queues `frame` for every connected device of `user` but `except`.
    pub(super) fn post_to_user(
        &mut self,
        user: UserId,
        except: Option<DeviceId>,
        frame: &Frame,
        class: Class,
    ) {
        let mut devices = std::mem::take(&mut self.devices);
        self.shared.directory.devices(user, &mut devices);
        for (device, session) in devices.iter().copied() {
            if Some(device) != except {
                self.post_frame(session, frame.clone(), class);
            }
        }
        self.devices = devices;
    }
}

/// The DELIVER body of `delivery`'s entry.
fn deliver_of(delivery: &Delivery, message: &Message) -> Deliver {
    Deliver {
        seq: delivery.seq,
        message_id: message.id,
        conversation: delivery.conversation,
        conv_seq: message.conv_seq,
        sender: message.sender,
        sender_device: message.sender_device,
        server_time: message.server_time,
        payload: Payload::new(message.payload.clone()).unwrap_or_default(),
    }
}

pub(super) fn receipt_frame(note: &ReceiptNote) -> Frame {
    Frame::Receipt(Receipt {
        conversation: note.conversation,
        user: note.user,
        kind: note.kind,
        up_to: note.up_to,
        at: note.at,
    })
}
