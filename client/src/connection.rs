//! The tokio driver: [`Client`] owns one [`Session`] and, while connected, one
//! WebSocket connection; it turns the session's frames into socket writes and
//! socket reads into [`Event`]s.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::{
    Capabilities, ConvSeq, Conversation, DeviceId, Frame, GroupId, Key, MediaClass, MediaId, OneTimePrekey,
    Payload, Role, Seq, SignedPrekey, Token, UserId, Visibility,
};
use tokio::time::timeout;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::event::Event;
use crate::link::Link;
use crate::media::MediaRef;
use crate::session::Session;
use crate::transport::{default_tls_config, Endpoint};

/// A connected (or reconnectable) gateway client.
///
/// The client reads only inside [`Client::next_event`]: call it in a loop
/// for as long as the connection should live. It also sends the heartbeat
/// PINGs and answers the server's PINGs.
///
/// When the connection ends, [`Client::next_event`] returns the reason once
/// (after the events already received), then `NotConnected`.
/// [`ClientError::is_resumable`] tells whether to [`Client::reconnect`];
/// the resume cursor and the pending sends carry over.
///
/// [`Client::send`], [`Client::ack`] and the presence subscriptions work
/// offline: the send stays pending and goes out on reconnect, the cursor goes
/// out in the next HELLO, subscriptions are repeated after each AUTH_OK. A
/// connection failure during them is reported by the next
/// [`Client::next_event`]. The other requests (READ, TYPING, PRESENCE_SET,
/// groups, prekeys) need a connection: offline they fail with
/// `NotConnected`, and they are never resent.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    /// `url`, then the fallback URLs.
    endpoints: Vec<Endpoint>,
    /// The one connected to (or tried last).
    current: usize,
    tls: Option<Arc<rustls::ClientConfig>>,
    session: Session,
    link: Option<Link>,
    /// Why the last connection ended, until `next_event` reports it.
    failure: Option<ClientError>,
    /// The next upload's client blob id.
    next_blob: u64,
}

impl Client {
    /// Connects (TCP, TLS for `wss://`, WebSocket upgrade), sends HELLO and
    /// waits for AUTH_OK. The [`Event::Authenticated`] stays queued as the
    /// first event.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let endpoint = Endpoint::parse(&config.url)?;
        let mut endpoints = vec![endpoint.clone()];
        for url in &config.fallback_urls {
            endpoints.push(Endpoint::parse(url)?);
        }
        if endpoints.iter().any(|other| other.is_tls() != endpoint.is_tls()) {
            return Err(ClientError::InvalidUrl("every fallback URL must have the scheme of url".into()));
        }
        let tls = match (&config.tls, endpoint.is_tls()) {
            (_, false) => None,
            (Some(tls), true) => Some(Arc::clone(tls)),
            (None, true) => Some(default_tls_config()?),
        };
        let token = Token::new(config.token.clone())?;
        let session = Session::new(config.device, token, config.capabilities, config.resume_after)
            .with_first_client_id(config.first_client_id);
        let mut client =
            Self { config, endpoints, current: 0, tls, session, link: None, failure: None, next_blob: 1 };
        client.establish_any().await?;
        Ok(client)
    }

    /// [`Client::establish`] on the current node, then on each other one in
    /// turn while the failure is one a reconnect may fix; the node that
    /// answers becomes the current one.
    async fn establish_any(&mut self) -> Result<(), ClientError> {
        let mut last = None;
        for _ in 0..self.endpoints.len() {
            match self.establish().await {
                Ok(()) => return Ok(()),
                Err(err) if err.is_resumable() => {
                    tracing::debug!(%err, url = %self.endpoint_url(), "node unreachable; trying the next");
                    last = Some(err);
                    self.current = (self.current + 1) % self.endpoints.len();
                }
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or(ClientError::NotConnected))
    }

    fn endpoint_url(&self) -> String {
        self.endpoints.get(self.current).map_or_else(String::new, Endpoint::url)
    }

    /// Opens a connection to the current node and authenticates, then
    /// resends the pending sends.
    async fn establish(&mut self) -> Result<(), ClientError> {
        self.disconnect();
        self.failure = None;
        let endpoint = self.endpoints.get(self.current).ok_or(ClientError::NotConnected)?;
        let open = Link::open(endpoint, self.tls.as_ref());
        let mut link = timeout(self.config.connect_timeout, open)
            .await
            .map_err(|_| ClientError::Timeout("connect"))??;
        let auth = timeout(self.config.auth_timeout, link.authenticate(&mut self.session)).await;
        if let Err(err) = auth.map_err(|_| ClientError::Timeout("auth")).and_then(|auth| auth) {
            self.session.on_disconnect();
            return Err(err);
        }
        let heartbeat_ms = self.session.auth().map_or(0, |auth| auth.heartbeat_ms);
        link.start_heartbeat(heartbeat_ms);
        self.link = Some(link);
        tracing::debug!(url = %self.endpoint_url(), acked = %self.session.acked(), "authenticated");
        let mut frames: Vec<Frame> = self.session.resend_pending().collect();
        if !frames.is_empty() {
            tracing::debug!(count = frames.len(), "resending pending sends");
        }
        frames.extend(self.session.resubscribe_presence());
        if !frames.is_empty() {
            self.write(&frames).await?;
        }
        Ok(())
    }

    /// Drops the connection, if any; the session keeps its cursor and sends.
    fn disconnect(&mut self) {
        self.link = None;
        self.session.on_disconnect();
    }

    /// Writes frames; a connection error drops the connection.
    async fn write(&mut self, frames: &[Frame]) -> Result<(), ClientError> {
        let link = self.link.as_mut().ok_or(ClientError::NotConnected)?;
        match link.write_frames(frames).await {
            Ok(()) => Ok(()),
            Err(err @ (ClientError::MessageTooLarge { .. } | ClientError::Encode(_))) => Err(err),
            Err(err) => {
                self.disconnect();
                Err(err)
            }
        }
    }

    /// Like [`Client::write`], but a connection failure is kept for
    /// [`Client::next_event`] instead of being returned.
    async fn write_or_defer(&mut self, frames: &[Frame]) -> Result<(), ClientError> {
        if self.link.is_none() {
            return Ok(());
        }
        match self.write(frames).await {
            Err(err @ (ClientError::MessageTooLarge { .. } | ClientError::Encode(_))) => Err(err),
            Err(err) => {
                self.failure.get_or_insert(err);
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// The next event: queued ones first, else reads from the connection
    /// (sending heartbeat PINGs and PONGs meanwhile).
    ///
    /// Cancel-safe for events: dropping the future loses no received frame.
    /// A server close is `Closed { code, .. }`; `code.resume()` tells whether
    /// to reconnect.
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            if let Some(event) = self.session.poll_event() {
                return Ok(event);
            }
            let Some(link) = self.link.as_mut() else {
                return Err(self.failure.take().unwrap_or(ClientError::NotConnected));
            };
            if let Err(err) = link.pump(&mut self.session).await {
                tracing::debug!(error = %err, "connection ended");
                self.disconnect();
                return Err(err);
            }
        }
    }

    /// Sends a message to `to` and returns its client id. It is pending until
    /// [`Event::Sent`] (or a terminal [`Event::SendFailed`]); if the
    /// connection is down it goes out on [`Client::reconnect`].
    pub async fn send(&mut self, to: Conversation, payload: Payload) -> Result<u64, ClientError> {
        let (client_id, frame) = self.session.send(to, payload);
        self.write_or_defer(&[frame]).await?;
        Ok(client_id)
    }

    /// Sends several messages in one WebSocket message; their client ids in
    /// order. Offline like [`Client::send`].
    pub async fn send_many(
        &mut self,
        messages: impl IntoIterator<Item = (Conversation, Payload)>,
    ) -> Result<Vec<u64>, ClientError> {
        let (ids, frames): (Vec<u64>, Vec<Frame>) =
            messages.into_iter().map(|(to, payload)| self.session.send(to, payload)).unzip();
        self.write_or_defer(&frames).await?;
        Ok(ids)
    }

    /// Retries one pending send (after a retryable [`Event::SendFailed`]) with
    /// its client id; `false` if it is not pending.
    pub async fn resend(&mut self, client_id: u64) -> Result<bool, ClientError> {
        let Some(frame) = self.session.resend(client_id) else {
            return Ok(false);
        };
        self.write_or_defer(&[frame]).await?;
        Ok(true)
    }

    /// Sends raw frames in one WebSocket message (several only past the
    /// client message limits). The session does not see them: a SEND sent
    /// this way is not tracked as pending.
    pub async fn send_frames(&mut self, frames: &[Frame]) -> Result<(), ClientError> {
        self.write(frames).await
    }

    /// Acknowledges every delivery up to `up_to` (clamped to the highest
    /// surfaced seq); does nothing if the cursor would not move. Offline, the
    /// cursor still moves and goes out in the next HELLO.
    pub async fn ack(&mut self, up_to: Seq) -> Result<(), ClientError> {
        match self.session.ack(up_to) {
            Some(frame) => self.write_or_defer(&[frame]).await,
            None => Ok(()),
        }
    }

    /// Asks for a replay of the inbox after `after` (`window` entries per
    /// batch, 0: server default). Seqs at or below `after` that were already
    /// surfaced will be surfaced again.
    pub async fn sync(&mut self, after: Seq, window: u32) -> Result<(), ClientError> {
        let frame = self.session.sync_request(after, window);
        self.write(&[frame]).await
    }

    /// Sends a PING now; returns its nonce ([`Event::Pong`] echoes it).
    pub async fn ping(&mut self) -> Result<u64, ClientError> {
        let (nonce, frame) = self.session.ping();
        self.write(&[frame]).await?;
        Ok(nonce)
    }

    /// Sends a frame built by the session if connected; `NotConnected`
    /// otherwise (requests are not kept for the next connection).
    async fn request(&mut self, frame: Frame) -> Result<(), ClientError> {
        self.write(&[frame]).await
    }

    /// Fails with `NotConnected` before a request id is allocated for nothing.
    fn connected(&self) -> Result<(), ClientError> {
        if self.link.is_none() {
            return Err(ClientError::NotConnected);
        }
        Ok(())
    }

    /// Sends READ: this user read `conversation` up to `up_to` (inclusive).
    pub async fn read(&mut self, conversation: Conversation, up_to: ConvSeq) -> Result<(), ClientError> {
        let frame = self.session.read(conversation, up_to);
        self.request(frame).await
    }

    /// Sends TYPING (started or stopped typing in `conversation`); repeat it
    /// every few seconds while typing goes on.
    pub async fn typing(&mut self, conversation: Conversation, active: bool) -> Result<(), ClientError> {
        let frame = self.session.typing(conversation, active);
        self.request(frame).await
    }

    /// Watches `user`'s presence ([`Event::Presence`] now and on each
    /// change). Kept across reconnects; offline, it goes out on the next
    /// connection.
    pub async fn presence_subscribe(&mut self, user: UserId) -> Result<(), ClientError> {
        let frame = self.session.presence_subscribe(user)?;
        self.write_or_defer(&[frame]).await
    }

    /// Stops watching `user`'s presence.
    pub async fn presence_unsubscribe(&mut self, user: UserId) -> Result<(), ClientError> {
        let frame = self.session.presence_unsubscribe(user);
        self.write_or_defer(&[frame]).await
    }

    /// Sets who may see this user's presence.
    pub async fn presence_set(&mut self, visibility: Visibility) -> Result<(), ClientError> {
        let frame = self.session.presence_set(visibility);
        self.request(frame).await
    }

    /// Creates a group named `name` with `members` besides this user; returns
    /// the request id ([`Event::GroupOk`] names the new group).
    pub async fn group_create(&mut self, name: &str, members: &[UserId]) -> Result<u64, ClientError> {
        self.connected()?;
        let (request, frame) = self.session.group_create(name, members)?;
        self.request(frame).await?;
        Ok(request)
    }

    /// Adds `members` to `group`; returns the request id.
    pub async fn group_add(&mut self, group: GroupId, members: &[UserId]) -> Result<u64, ClientError> {
        self.connected()?;
        let (request, frame) = self.session.group_add(group, members)?;
        self.request(frame).await?;
        Ok(request)
    }

    /// Removes `members` from `group`; returns the request id.
    pub async fn group_remove(&mut self, group: GroupId, members: &[UserId]) -> Result<u64, ClientError> {
        self.connected()?;
        let (request, frame) = self.session.group_remove(group, members)?;
        self.request(frame).await?;
        Ok(request)
    }

    /// Leaves `group`; returns the request id.
    pub async fn group_leave(&mut self, group: GroupId) -> Result<u64, ClientError> {
        self.connected()?;
        let (request, frame) = self.session.group_leave(group);
        self.request(frame).await?;
        Ok(request)
    }

    /// Gives `user` the role `role` in `group`; returns the request id.
    pub async fn group_set_role(
        &mut self,
        group: GroupId,
        user: UserId,
        role: Role,
    ) -> Result<u64, ClientError> {
        self.connected()?;
        let (request, frame) = self.session.group_set_role(group, user, role);
        self.request(frame).await?;
        Ok(request)
    }

    /// Asks for `group`'s name and members; returns the request id
    /// ([`Event::GroupInfo`] answers).
    pub async fn group_get(&mut self, group: GroupId) -> Result<u64, ClientError> {
        self.connected()?;
        let (request, frame) = self.session.group_get(group);
        self.request(frame).await?;
        Ok(request)
    }

    /// Publishes this device's keys; returns the request id
    /// ([`Event::PrekeyOk`] answers).
    pub async fn prekey_upload(
        &mut self,
        identity_key: Key,
        signed_prekey: SignedPrekey,
        one_time: &[OneTimePrekey],
    ) -> Result<u64, ClientError> {
        self.connected()?;
        let (request, frame) = self.session.prekey_upload(identity_key, signed_prekey, one_time)?;
        self.request(frame).await?;
        Ok(request)
    }

    /// Fetches the prekey bundles of `user`'s `device` (`DeviceId(0)`: every
    /// device); returns the request id ([`Event::PrekeyBundles`] answers).
    pub async fn prekey_fetch(&mut self, user: UserId, device: DeviceId) -> Result<u64, ClientError> {
        self.connected()?;
        let (request, frame) = self.session.prekey_fetch(user, device);
        self.request(frame).await?;
        Ok(request)
    }

    /// Asks for a ticket to upload a blob of `size` bytes; returns the
    /// request id ([`Event::MediaUploadTicket`] answers). [`Client::upload`]
    /// does the whole upload.
    pub async fn media_upload(
        &mut self,
        client_blob: u64,
        size: u64,
        class: MediaClass,
    ) -> Result<u64, ClientError> {
        self.media_granted()?;
        let (request, frame) = self.session.media_upload(client_blob, size, class);
        self.request(frame).await?;
        Ok(request)
    }

    /// Asks for a ticket to download the blob `media_id` names; returns the
    /// request id ([`Event::MediaDownloadTicket`] answers).
    /// [`Client::download`] does the whole download.
    pub async fn media_download(&mut self, media_id: MediaId) -> Result<u64, ClientError> {
        self.media_granted()?;
        let (request, frame) = self.session.media_download(media_id);
        self.request(frame).await?;
        Ok(request)
    }

    /// Uploads `blob` (encrypted by the application) to the object store: a
    /// ticket from the gateway, then an HTTP PUT with it. Returns what a
    /// message names the blob by. The connection keeps being served
    /// meanwhile (heartbeats), and events that arrive stay queued for
    /// [`Client::next_event`]. A refusal is [`ClientError::Refused`] (SPEC
    /// §6.8), a failed PUT [`ClientError::ObjectStore`], a capability the
    /// server did not grant [`ClientError::NotGranted`] (nothing is sent).
    pub async fn upload(&mut self, blob: Bytes, class: MediaClass) -> Result<MediaRef, ClientError> {
        let size = blob.len() as u64;
        let request = self.media_upload(self.next_blob, size, class).await?;
        self.next_blob += 1;
        let Event::MediaUploadTicket(ticket) = self.answer(request).await? else {
            return Err(ClientError::Protocol("a media upload answered with another frame".into()));
        };
        let tls = self.config.tls.clone();
        let put = crate::media::put(&ticket, blob, tls.as_ref(), self.config.media_timeout);
        self.beside_session(put).await?;
        Ok(MediaRef { media_id: ticket.media_id, size })
    }

    /// Downloads the blob `media` names from the object store (a ticket
    /// from the gateway, then an HTTP GET of exactly `media.size` bytes); the
    /// application decrypts it and checks its digest. Errors as for
    /// [`Client::upload`].
    pub async fn download(&mut self, media: &MediaRef) -> Result<Bytes, ClientError> {
        let request = self.media_download(media.media_id.clone()).await?;
        let Event::MediaDownloadTicket(ticket) = self.answer(request).await? else {
            return Err(ClientError::Protocol("a media download answered with another frame".into()));
        };
        let tls = self.config.tls.clone();
        let get = crate::media::get(&ticket, media.size, tls.as_ref(), self.config.media_timeout);
        self.beside_session(get).await
    }

    /// Runs `transfer` (a media request's HTTP leg) while the connection
    /// keeps being read (heartbeat PINGs, PONGs, events queued for
    /// [`Client::next_event`]), so that a long upload does not starve the
    /// session. A connection that ends meanwhile is reported by the next
    /// `next_event`; the transfer goes on.
    async fn beside_session<T>(
        &mut self,
        transfer: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        tokio::pin!(transfer);
        loop {
            let Some(link) = self.link.as_mut() else { return transfer.await };
            tokio::select! {
                result = &mut transfer => return result,
                pumped = link.pump(&mut self.session) => {
                    if let Err(err) = pumped {
                        self.disconnect();
                        self.failure.get_or_insert(err);
                    }
                }
            }
        }
    }

    /// Connected, with the MEDIA capability granted (sending a media frame
    /// without it would end the session: SPEC §6.8).
    fn media_granted(&self) -> Result<(), ClientError> {
        self.connected()?;
        if self.session.granted().contains(Capabilities::MEDIA) {
            Ok(())
        } else {
            Err(ClientError::NotGranted(Capabilities::MEDIA))
        }
    }

    /// Reads until the answer to `request` arrives (its ticket; an ERROR
    /// naming it is [`ClientError::Refused`]), within the auth deadline.
    async fn answer(&mut self, request: u64) -> Result<Event, ClientError> {
        let deadline = self.config.auth_timeout;
        let wait = async {
            loop {
                match self.session.take_answer(request) {
                    Some(Event::Error(error)) => {
                        return Err(ClientError::Refused {
                            code: error.code,
                            retry_after_ms: error.retry_after_ms,
                            text: error.text.as_str().to_owned(),
                        })
                    }
                    Some(answer) => return Ok(answer),
                    None => {}
                }
                let Some(link) = self.link.as_mut() else { return Err(ClientError::NotConnected) };
                if let Err(err) = link.pump(&mut self.session).await {
                    self.disconnect();
                    return Err(err);
                }
            }
        };
        timeout(deadline, wait).await.map_err(|_| ClientError::Timeout("media ticket"))?
    }

    /// Replaces the token for the next HELLO (after `AUTH_EXPIRED`).
    pub fn set_token(&mut self, token: Bytes) -> Result<(), ClientError> {
        self.session.set_token(Token::new(token)?);
        Ok(())
    }

    /// Closes the current connection, if any, and connects again to the
    /// current URL (or, if it cannot be reached, to the fallback URLs in
    /// turn): HELLO resumes after the last acked seq, and the pending sends
    /// are resent with their client ids after AUTH_OK.
    pub async fn reconnect(&mut self) -> Result<(), ClientError> {
        if let Some(mut link) = self.link.take() {
            link.close(protocol::CloseCode::NORMAL, "reconnecting").await;
        }
        self.establish_any().await
    }

    /// [`Client::reconnect`] to the `host:port` of a GOAWAY's `redirect`
    /// (same scheme and path), or to the current URL if it is empty. Later
    /// reconnects keep the new address.
    pub async fn reconnect_to(&mut self, redirect: &str) -> Result<(), ClientError> {
        if !redirect.is_empty() {
            let current = self.endpoints.get(self.current).ok_or(ClientError::NotConnected)?;
            let redirected = current.redirect(redirect)?;
            if let Some(slot) = self.endpoints.get_mut(self.current) {
                *slot = redirected;
            }
        }
        self.reconnect().await
    }

    /// Closes the connection with 1000 (waiting briefly for the server's
    /// reply). Pending sends and the cursor stay in [`Client::session`].
    pub async fn close(&mut self) -> Result<(), ClientError> {
        let link = self.link.take();
        self.session.on_disconnect();
        match link {
            Some(link) => link.shutdown().await,
            None => Ok(()),
        }
    }

    /// The session core: cursor, pending sends, AUTH_OK data.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The authenticated user, while connected.
    pub fn user(&self) -> Option<UserId> {
        self.session.user()
    }

    /// Whether a connection is up and authenticated.
    pub fn is_connected(&self) -> bool {
        self.link.is_some()
    }

    /// The PING interval the server asked for, while connected (`None` also
    /// when it asked for none).
    pub fn heartbeat_interval(&self) -> Option<Duration> {
        self.link.as_ref().and_then(Link::heartbeat_period)
    }

    /// The configuration connected with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }
}
