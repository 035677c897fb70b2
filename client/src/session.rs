//! The sans-IO session core: the client half of the delivery contract (resume
//! cursor, deduplication of deliveries, cumulative acks, pending sends and their
//! resend, heartbeat answers), with no socket, clock or runtime.
//!
//! A driver (the tokio [`Client`](crate::Client), or a load tool's event loop)
//! owns the socket and feeds decoded frames in; the core hands back events for
//! the application and frames to transmit.

mod requests;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use protocol::limits::{VERSION_MAX, VERSION_MIN};
use protocol::{
    Ack, AuthOk, Capabilities, Conversation, Deliver, DeviceId, Direction, Frame, FrameKind, Hello, ListIter,
    Payload, Ping, Pong, Retry, SendMessage, Seq, SyncRequest, Token, UserId,
};

use crate::error::UnexpectedFrame;
use crate::event::Event;

/// A send not yet acknowledged by SEND_ACK (or refused with a terminal code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSend {
    /// The id the client chose; resends reuse it.
    pub client_id: u64,
    /// Recipient.
    pub to: Conversation,
    /// Ciphertext (shared, resending copies nothing).
    pub payload: Payload,
}

impl PendingSend {
    fn frame(&self) -> Frame {
        Frame::SendMessage(SendMessage {
            client_id: self.client_id,
            to: self.to,
            payload: self.payload.clone().into(),
        })
    }
}

/// Work queued for [`Session::poll_event`]. Deliveries stay undecided until
/// polled, so "surfaced" means handed to the application.
#[derive(Debug)]
enum Queued {
    Event(Event),
    Deliver(Deliver),
    /// A SYNC_BATCH, decoded entry by entry as it is polled (no allocation);
    /// `last` is the seq of the last entry polled, duplicates included.
    Batch {
        entries: ListIter<Deliver>,
        remaining: u64,
        last: Seq,
    },
}

/// The client side of one device's session, across connections.
///
/// # Call order
///
/// 1. [`Session::new`] once per device (with the resume cursor and the first
///    client id the application persisted).
/// 2. Per connection: transmit [`Session::hello`] as the first frame, then feed
///    every decoded server frame to [`Session::handle_frame`], in order. After
///    each call (or each WebSocket message), drain [`Session::poll_transmit`]
///    onto the socket and [`Session::poll_event`] into the application.
///    [`Session::is_live`] turns true once AUTH_OK was handled; only then may
///    the driver transmit anything but HELLO. An `Err` from `handle_frame`
///    ends the connection (close with `UNEXPECTED_FRAME`, then step 4).
/// 3. While live: [`Session::send`], [`Session::ack`], [`Session::ping`],
///    [`Session::sync_request`] and the builders of the other client frames
///    (READ, TYPING, PRESENCE_*, GROUP_*, PREKEY_*: see below) return frames to
///    transmit; the state they change (pending sends, cursor, presence
///    subscriptions, outstanding requests) is updated at once. Sends, acks and
///    presence subscriptions may also be made offline: they take effect on
///    the next connection.
/// 4. When the connection ends for any reason: [`Session::on_disconnect`]. The
///    resume cursor, the pending sends, the presence subscriptions and events
///    not yet polled survive; outstanding requests are forgotten (their
///    answers cannot come any more).
/// 5. On the next connection, after AUTH_OK: transmit every frame of
///    [`Session::resend_pending`] (same client ids; the store deduplicates)
///    and of [`Session::resubscribe_presence`] (subscriptions belong to a
///    connection, SPEC §6.6).
///
/// # Requests
///
/// Group and prekey builders ([`Session::group_create`],
/// [`Session::prekey_fetch`], …) allocate a `request` id (never 0, unique
/// among outstanding requests) and return it with the frame. The answer
/// ([`Event::GroupOk`], [`Event::GroupInfo`], [`Event::PrekeyBundles`],
/// [`Event::PrekeyOk`], or [`Event::Error`] with `reference` = the id) ends
/// the request. Requests are never resent: after a disconnect the
/// application decides whether to repeat one (a GROUP_CREATE may have been
/// applied before the connection dropped). Builders whose lists or text can
/// exceed a protocol limit return [`EncodeError`](protocol::EncodeError), and
/// allocate no id then.
///
/// The server may start a sync on its own at any time after AUTH_OK (SPEC
/// §6.3: after it had to skip live entries, it replays from the last seq it
/// sent): SYNC_BATCH and SYNC_DONE are accepted whenever the session is live,
/// and the dedup rule below makes replayed entries harmless.
///
/// Deliveries are surfaced in seq order and at most once: one whose seq is not
/// above the highest seq already surfaced is dropped when polled (counted in
/// [`Session::duplicates_dropped`]). The server sends each connection's
/// deliveries in seq order; duplicates come from a live delivery racing a
/// reconnect sync (SPEC §6.3).
///
/// The application acks what it processed with [`Session::ack`], and MUST ack
/// each sync batch once processed ([`Event::SyncProgress`] carries the seq to
/// ack): the server sends at most two batches ahead of the acks.
#[derive(Debug)]
pub struct Session {
    device: DeviceId,
    token: Token,
    capabilities: Capabilities,
    acked: Seq,
    surfaced: Seq,
    next_client_id: u64,
    next_nonce: u64,
    pending: BTreeMap<u64, PendingSend>,
    auth: Option<AuthOk>,
    synced: bool,
    duplicates: u64,
    queue: VecDeque<Queued>,
    transmit: VecDeque<Frame>,
    next_request: u64,
    /// Requests sent on this connection and not answered yet, by id.
    requests: BTreeMap<u64, FrameKind>,
    /// Users whose presence this device watches (resubscribed on reconnect).
    subscriptions: BTreeSet<UserId>,
}

impl Session {
    /// A session for `device`, resuming after `resume_after` (the last seq this
    /// device acknowledged, `Seq(0)` for none). Client ids start at 1.
    pub fn new(device: DeviceId, token: Token, capabilities: Capabilities, resume_after: Seq) -> Self {
        Self {
            device,
            token,
            capabilities,
            acked: resume_after,
            surfaced: resume_after,
            next_client_id: 1,
            next_nonce: 1,
            pending: BTreeMap::new(),
            auth: None,
            synced: false,
            duplicates: 0,
            queue: VecDeque::new(),
            transmit: VecDeque::new(),
            next_request: 1,
            requests: BTreeMap::new(),
            subscriptions: BTreeSet::new(),
        }
    }

    /// Starts client ids at `first` (0 is read as 1). Client ids must stay
    /// unique per device across restarts, or the store takes a new message for
    /// a resend of an old one: persist [`Session::next_client_id`], or start
    /// from a clock.
    #[must_use]
    pub fn with_first_client_id(mut self, first: u64) -> Self {
        self.next_client_id = first.max(1);
        self
    }

    /// Replaces the token used by the next [`Session::hello`] (after
    /// `AUTH_EXPIRED`).
    pub fn set_token(&mut self, token: Token) {
        self.token = token;
    }

    /// The HELLO that opens a connection: versions, device, capabilities, token
    /// and the resume cursor ([`Session::acked`]).
    pub fn hello(&self) -> Frame {
        Frame::Hello(Hello {
            min_version: VERSION_MIN,
            max_version: VERSION_MAX,
            device: self.device,
            resume_after: self.acked,
            capabilities: self.capabilities,
            token: self.token.clone(),
        })
    }

    /// Takes in one server frame. Fails, changing nothing, on a frame the
    /// server may not send now (SPEC §4: client-only kinds, anything but
    /// AUTH_OK, AUTH_ERROR and ERROR before AUTH_OK, a second AUTH_OK or
    /// AUTH_ERROR, an AUTH_OK for another device or version): the driver
    /// closes the connection with `UNEXPECTED_FRAME`.
    pub fn handle_frame(&mut self, frame: Frame) -> Result<(), UnexpectedFrame> {
        let kind = frame.kind();
        let unexpected = |reason| UnexpectedFrame { kind, reason };
        if kind.direction() == Direction::ClientToServer {
            return Err(unexpected("client-to-server frame kind"));
        }
        let live = self.auth.is_some();
        match frame {
            Frame::AuthOk(ok) => {
                if live {
                    return Err(unexpected("session already authenticated"));
                }
                if ok.device != self.device {
                    return Err(unexpected("AUTH_OK names another device"));
                }
                if !(VERSION_MIN..=VERSION_MAX).contains(&ok.version) {
                    return Err(unexpected("AUTH_OK chose a version this client does not speak"));
                }
                self.auth = Some(ok.clone());
                self.synced = false;
                self.push(Event::Authenticated(ok));
            }
            Frame::AuthError(err) => {
                if live {
                    return Err(unexpected("session already authenticated"));
                }
                let (code, retry_after_ms, text) = (err.code, err.retry_after_ms, err.text);
                self.push(Event::AuthRejected { code, retry_after_ms, text });
            }
            Frame::Error(error) => {
                self.answered(error.reference);
                self.push(Event::Error(error));
            }
            _ if !live => return Err(unexpected("frame before AUTH_OK")),
            Frame::Ping(Ping { nonce }) => {
                self.transmit.push_back(Frame::Pong(Pong { nonce }));
                self.push(Event::Ping { nonce });
            }
            Frame::Pong(Pong { nonce }) => self.push(Event::Pong { nonce }),
            Frame::GoAway(goaway) => {
                // Resume after the server's record or our cursor, whichever is
                // higher; entries up to it are processed either way.
                self.acked = self.acked.max(goaway.resume_after);
                self.surfaced = self.surfaced.max(goaway.resume_after);
                self.push(Event::GoAway(goaway));
            }
            Frame::Deliver(deliver) => self.queue.push_back(Queued::Deliver(deliver)),
            Frame::SyncBatch(batch) => {
                // A sync runs (the server may start one on its own, SPEC §6.3).
                self.synced = false;
                let entries = batch.entries.iter();
                let remaining = batch.remaining;
                self.queue.push_back(Queued::Batch { entries, remaining, last: Seq(0) });
            }
            Frame::SyncDone(done) => {
                self.synced = true;
                self.push(Event::Synced { head: done.head });
            }
            Frame::SendAck(ack) => {
                self.pending.remove(&ack.client_id);
                self.push(Event::Sent {
                    client_id: ack.client_id,
                    message_id: ack.message_id,
                    conv_seq: ack.conv_seq,
                    server_time: ack.server_time,
                    duplicate: ack.duplicate,
                });
            }
            Frame::SendError(err) => {
                let retryable = err.code.retry() == Retry::Retryable;
                if !retryable {
                    self.pending.remove(&err.client_id);
                }
                self.push(Event::SendFailed {
                    client_id: err.client_id,
                    code: err.code,
                    retryable,
                    retry_after_ms: err.retry_after_ms,
                    text: err.text,
                });
            }
            Frame::Receipt(receipt) => self.push(Event::Receipt(receipt)),
            Frame::Presence(presence) => self.push(Event::Presence(presence)),
            Frame::TypingNotify(typing) => self.push(Event::Typing(typing)),
            Frame::GroupOk(ok) => {
                self.answered(ok.request);
                self.push(Event::GroupOk(ok));
            }
            Frame::GroupInfo(info) => {
                self.answered(info.request);
                self.push(Event::GroupInfo(info));
            }
            Frame::PrekeyBundles(bundles) => {
                self.answered(bundles.request);
                self.push(Event::PrekeyBundles(bundles));
            }
            Frame::PrekeyOk(ok) => {
                self.answered(ok.request);
                self.push(Event::PrekeyOk(ok));
            }
            Frame::PrekeyLow(low) => self.push(Event::PrekeyLow { stock: low.stock }),
            Frame::MediaUploadTicket(ticket) => {
                self.answered(ticket.request);
                self.push(Event::MediaUploadTicket(ticket));
            }
            Frame::MediaDownloadTicket(ticket) => {
                self.answered(ticket.request);
                self.push(Event::MediaDownloadTicket(ticket));
            }
            other => self.push(Event::Other(other)),
        }
        Ok(())
    }

    /// An answer to `request` arrived (0: unsolicited, nothing to end). An
    /// answer to a request that is not outstanding is still surfaced.
    fn answered(&mut self, request: u64) {
        if request != 0 {
            self.requests.remove(&request);
        }
    }

    fn push(&mut self, event: Event) {
        self.queue.push_back(Queued::Event(event));
    }

    /// Takes the answer to `request` out of the queued events (its ticket, or
    /// the ERROR naming it), leaving the others in order.
    pub fn take_answer(&mut self, request: u64) -> Option<Event> {
        let at = self.queue.iter().position(|queued| match queued {
            Queued::Event(Event::MediaUploadTicket(ticket)) => ticket.request == request,
            Queued::Event(Event::MediaDownloadTicket(ticket)) => ticket.request == request,
            Queued::Event(Event::Error(error)) => request != 0 && error.reference == request,
            _ => false,
        })?;
        match self.queue.remove(at)? {
            Queued::Event(event) => Some(event),
            _ => None,
        }
    }

    /// The next event for the application, if any. Deliveries that repeat an
    /// already surfaced seq are dropped here.
    pub fn poll_event(&mut self) -> Option<Event> {
        loop {
            match self.queue.front_mut()? {
                Queued::Event(_) | Queued::Deliver(_) => match self.queue.pop_front()? {
                    Queued::Event(event) => return Some(event),
                    Queued::Deliver(deliver) => {
                        if let Some(event) = self.surface(deliver) {
                            return Some(event);
                        }
                    }
                    Queued::Batch { .. } => {}
                },
                Queued::Batch { entries, remaining, last } => match entries.next() {
                    Some(deliver) => {
                        *last = deliver.seq;
                        if let Some(event) = self.surface(deliver) {
                            return Some(event);
                        }
                    }
                    None => {
                        let (remaining, up_to) = (*remaining, *last);
                        self.queue.pop_front();
                        return Some(Event::SyncProgress { remaining, up_to });
                    }
                },
            }
        }
    }

    fn surface(&mut self, deliver: Deliver) -> Option<Event> {
        if deliver.seq <= self.surfaced {
            self.duplicates += 1;
            return None;
        }
        self.surfaced = deliver.seq;
        Some(Event::Delivered(deliver))
    }

    /// The next frame the core wants transmitted (PONG answers), if any.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.transmit.pop_front()
    }

    /// Records a new send to `to` and returns its client id and SEND frame. The
    /// send is pending until SEND_ACK or a terminal SEND_ERROR.
    pub fn send(&mut self, to: Conversation, payload: Payload) -> (u64, Frame) {
        let client_id = self.next_client_id;
        self.next_client_id = client_id.wrapping_add(1).max(1);
        let pending = PendingSend { client_id, to, payload };
        let frame = pending.frame();
        self.pending.insert(client_id, pending);
        (client_id, frame)
    }

    /// The SEND frame of one pending send, to retry it after a retryable
    /// SEND_ERROR; `None` if it is not pending.
    pub fn resend(&self, client_id: u64) -> Option<Frame> {
        self.pending.get(&client_id).map(PendingSend::frame)
    }

    /// SEND frames of every pending send, oldest first, with their original
    /// client ids: transmit them after AUTH_OK on a new connection.
    pub fn resend_pending(&self) -> impl Iterator<Item = Frame> + '_ {
        self.pending.values().map(PendingSend::frame)
    }

    /// Acknowledges every seq up to `up_to`, clamped to the highest surfaced
    /// seq (a client never acks what it was not given). Returns the ACK frame,
    /// or `None` if that does not move the cursor. The cursor moves at once:
    /// it is the next HELLO's `resume_after` even if the ACK is never sent.
    pub fn ack(&mut self, up_to: Seq) -> Option<Frame> {
        let up_to = up_to.min(self.surfaced);
        if up_to <= self.acked {
            return None;
        }
        self.acked = up_to;
        Some(Frame::Ack(Ack { up_to }))
    }

    /// [`Session::ack`] of everything surfaced so far.
    pub fn ack_surfaced(&mut self) -> Option<Frame> {
        self.ack(self.surfaced)
    }

    /// A PING with a fresh nonce, and the nonce.
    pub fn ping(&mut self) -> (u64, Frame) {
        let nonce = self.next_nonce;
        self.next_nonce = nonce.wrapping_add(1);
        (nonce, Frame::Ping(Ping { nonce }))
    }

    /// A SYNC_REQUEST replaying the inbox after `after` (`window` entries per
    /// batch, 0: server default). Asking for seqs already surfaced means the
    /// application wants them again: the dedup cursor is lowered to `after`.
    pub fn sync_request(&mut self, after: Seq, window: u32) -> Frame {
        self.surfaced = self.surfaced.min(after);
        self.synced = false;
        Frame::SyncRequest(SyncRequest { after, window })
    }

    /// The connection ended: back to "not authenticated". Keeps the cursor,
    /// the pending sends, the presence subscriptions and unpolled events;
    /// drops unsent PONGs and forgets outstanding requests.
    pub fn on_disconnect(&mut self) {
        self.auth = None;
        self.synced = false;
        self.transmit.clear();
        self.requests.clear();
    }

    /// This device.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// Capabilities asked for in HELLO.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// Capabilities the server granted in the last AUTH_OK (none before one).
    pub fn granted(&self) -> Capabilities {
        self.auth.as_ref().map_or(Capabilities(0), |ok| ok.capabilities)
    }

    /// The resume cursor: the highest seq acked (next HELLO's `resume_after`).
    pub fn acked(&self) -> Seq {
        self.acked
    }

    /// The highest seq surfaced by [`Session::poll_event`].
    pub fn surfaced(&self) -> Seq {
        self.surfaced
    }

    /// The client id the next [`Session::send`] uses (persist it).
    pub fn next_client_id(&self) -> u64 {
        self.next_client_id
    }

    /// Pending sends, oldest first.
    pub fn pending(&self) -> impl ExactSizeIterator<Item = &PendingSend> + '_ {
        self.pending.values()
    }

    /// Whether `client_id` is pending.
    pub fn is_pending(&self, client_id: u64) -> bool {
        self.pending.contains_key(&client_id)
    }

    /// AUTH_OK of the current connection, while live.
    pub fn auth(&self) -> Option<&AuthOk> {
        self.auth.as_ref()
    }

    /// Whether AUTH_OK was handled on the current connection.
    pub fn is_live(&self) -> bool {
        self.auth.is_some()
    }

    /// Whether the last sync finished: SYNC_DONE arrived since AUTH_OK, the
    /// last SYNC_REQUEST and the last SYNC_BATCH (the server may start a sync
    /// on its own).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The authenticated user, while live.
    pub fn user(&self) -> Option<UserId> {
        self.auth.as_ref().map(|auth| auth.user)
    }

    /// Deliveries dropped as duplicates so far.
    pub fn duplicates_dropped(&self) -> u64 {
        self.duplicates
    }
}
