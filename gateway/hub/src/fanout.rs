//! Output for sessions other than the one being handled: live inbox entries,
//! receipts, presence, typing and prekey notices, posted to the outbox of
//! the session's worker (`routing::outbox`: one batch per worker per turn,
//! this worker's own applied at the end of the turn, never in the middle of
//! another session's call), and push notes for devices not connected.
//!
//! Beyond `HubConfig::max_batch` items for one worker the oldest are shed and
//! counted (`drops{reason="inbox_full"}`): a shed live entry is not lost, its
//! device finds the gap at its next entry, or at its next sync, and reads it
//! from the store.

use backend_push::PushNote;
use backend_store::{Delivery, Message, ReceiptNote};
use gateway_admin::DropReason;
use gateway_core::{Class, SharedDeliver};
use protocol::{Capabilities, Conversation, DeviceId, Frame, Receipt, UserId};
use routing::{Posted, SessionRef};

use crate::work::{Confirm, FleetItem, Now, PushWork, Remote};
use crate::Hub;

/// The capability a frame needs the client to have asked for, if any.
fn needs(frame: &Frame) -> Option<Capabilities> {
    match frame {
        Frame::Receipt(_) => Some(Capabilities::RECEIPTS),
        Frame::Presence(_) => Some(Capabilities::PRESENCE),
        Frame::TypingNotify(_) => Some(Capabilities::TYPING),
        _ => None,
    }
}

impl<C> Hub<C> {
    /// Queues `item` for its session's worker, or for the fleet router
    /// (sent at the end of the turn).
    pub(crate) fn post(&mut self, item: Remote) {
        match self.outbox.post(item.destination(self.fleet), item) {
            Posted::Queued => {}
            Posted::Shed => self.metrics.drops.inc(DropReason::InboxFull),
            Posted::Unknown => debug_assert!(false, "a session of a worker that does not exist"),
        }
    }

    /// Queues `frame` for `to`.
    pub(crate) fn post_frame(&mut self, to: SessionRef, frame: Frame, class: Class) {
        self.post(Remote::Frame { to, frame, class });
    }

    /// Hands each item to its session on this worker (if it is still there).
    pub(crate) fn apply(&mut self, now: Now, items: Vec<Remote>) {
        for item in items {
            let to = match &item {
                Remote::Live { to, .. }
                | Remote::Frame { to, .. }
                | Remote::Replace(to)
                | Remote::Resync(to) => *to,
                Remote::Confirmed(confirm) => {
                    self.confirmed(now, confirm.token);
                    continue;
                }
                Remote::Fleet(_) => {
                    debug_assert!(false, "a fleet item handed to a worker");
                    continue;
                }
            };
            let Some(key) = self.live_key(to) else { continue };
            match item {
                Remote::Live { seq, deliver, .. } => {
                    self.call(now, key, |session, ctx| session.deliver_live(ctx, seq, &deliver));
                }
                Remote::Frame { frame, class, .. } => {
                    let wanted =
                        self.slots.get(key).is_some_and(|slot| needs(&frame).is_none_or(|c| slot.wants(c)));
                    if wanted {
                        self.call(now, key, |session, ctx| {
                            let _ = session.send(ctx, &frame, class);
                        });
                    }
                }
                Remote::Replace(_) => self.replaced(now, key),
                Remote::Resync(_) => self.call(now, key, |session, ctx| session.resync(ctx)),
                Remote::Fleet(_) | Remote::Confirmed(_) => {}
            }
        }
    }
}

impl<C> Hub<C> {
    /// Delivers a stored message's inbox entries: live to connected devices
    /// (the DELIVER encoded once per conversation view), a push note for the
    /// others; in a fleet, entries for devices not here go to the fleet
    /// router with `confirm`. Returns how many went to the router.
    pub(crate) fn fanout(
        &mut self,
        message: &Message,
        deliveries: &[Delivery],
        confirm: Option<Confirm>,
    ) -> usize {
        let mut elsewhere = 0;
        let mut views: Vec<(Conversation, SharedDeliver)> = Vec::with_capacity(2);
        let mut devices = std::mem::take(&mut self.devices);
        let mut current = None;
        for delivery in deliveries {
            if current != Some(delivery.user) {
                self.directory.devices(delivery.user, &mut devices);
                current = Some(delivery.user);
            }
            let session = devices.iter().find(|(device, _)| *device == delivery.device).map(|(_, s)| *s);
            let Some(to) = session else {
                if self.in_fleet() {
                    // Maybe on another node: the fleet router finds out (and
                    // sends the push note if the device is nowhere).
                    let deliver = view(&mut views, delivery, message);
                    self.post(Remote::Fleet(FleetItem::Live {
                        user: delivery.user,
                        device: delivery.device,
                        seq: delivery.seq,
                        deliver,
                        conversation: delivery.conversation,
                        sender: message.sender,
                        confirm,
                    }));
                    elsewhere += 1;
                    continue;
                }
                self.push.push_back(PushWork::Notify(PushNote {
                    user: delivery.user,
                    device: delivery.device,
                    seq: delivery.seq,
                    conversation: delivery.conversation,
                    sender: message.sender,
                }));
                continue;
            };
            let deliver = view(&mut views, delivery, message);
            self.post(Remote::Live { to, seq: delivery.seq, deliver });
        }
        self.devices = devices;
        elsewhere
    }

    /// Sends each cursor move to the devices of the user who must hear it.
    pub(crate) fn receipts(&mut self, notes: &[ReceiptNote]) {
        for note in notes {
            self.post_to_user(note.to, note.except, &receipt_frame(note), Class::Live);
        }
    }

    /// Queues `frame` for every connected device of `user` but `except`.
    pub(crate) fn post_to_user(
        &mut self,
        user: UserId,
        except: Option<DeviceId>,
        frame: &Frame,
        class: Class,
    ) {
        let mut devices = std::mem::take(&mut self.devices);
        self.directory.devices(user, &mut devices);
        for (device, session) in devices.iter().copied() {
            if Some(device) != except {
                self.post_frame(session, frame.clone(), class);
            }
        }
        self.devices = devices;
        if self.in_fleet() {
            // Its devices on other nodes (the router skips this one).
            self.post(Remote::Fleet(FleetItem::ToUser { user, except, frame: frame.clone(), class }));
        }
    }
}

/// The DELIVER of `message` as `delivery`'s conversation view sees it,
/// encoded once per view (`views`) and shared by every device of that view.
fn view(
    views: &mut Vec<(Conversation, SharedDeliver)>,
    delivery: &Delivery,
    message: &Message,
) -> SharedDeliver {
    match views.iter().find(|(view, _)| *view == delivery.conversation) {
        Some((_, shared)) => shared.clone(),
        None => {
            let shared = SharedDeliver::new(&delivery.deliver(message));
            views.push((delivery.conversation, shared.clone()));
            shared
        }
    }
}

pub(crate) fn receipt_frame(note: &ReceiptNote) -> Frame {
    Frame::Receipt(Receipt {
        conversation: note.conversation,
        user: note.user,
        kind: note.kind,
        up_to: note.up_to,
        at: note.at,
    })
}
