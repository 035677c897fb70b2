//! The tokio driver: [`Client`] owns one [`Session`] and, while connected, one
//! WebSocket connection; it turns the session's frames into socket writes and
//! socket reads into [`Event`]s.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use protocol::{Conversation, Frame, Payload, Seq, Token, UserId};
use tokio::time::timeout;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::event::Event;
use crate::link::Link;
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
/// [`Client::send`] and [`Client::ack`] work offline: the send stays pending
/// and goes out on reconnect, the cursor goes out in the next HELLO. A
/// connection failure during them is reported by the next
/// [`Client::next_event`].
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    session: Session,
    link: Option<Link>,
    /// Why the last connection ended, until `next_event` reports it.
    failure: Option<ClientError>,
}

impl Client {
    /// Connects (TCP, TLS for `wss://`, WebSocket upgrade), sends HELLO and
    /// waits for AUTH_OK. The [`Event::Authenticated`] stays queued as the
    /// first event.
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let endpoint = Endpoint::parse(&config.url)?;
        let tls = match (&config.tls, endpoint.is_tls()) {
            (_, false) => None,
            (Some(tls), true) => Some(Arc::clone(tls)),
            (None, true) => Some(default_tls_config()?),
        };
        let token = Token::new(config.token.clone())?;
        let session = Session::new(config.device, token, config.capabilities, config.resume_after)
            .with_first_client_id(config.first_client_id);
        let mut client = Self { config, endpoint, tls, session, link: None, failure: None };
        client.establish().await?;
        Ok(client)
    }

    /// Opens a connection and authenticates, then resends the pending sends.
    async fn establish(&mut self) -> Result<(), ClientError> {
        self.disconnect();
        self.failure = None;
        let open = Link::open(&self.endpoint, self.tls.as_ref());
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
        tracing::debug!(url = %self.config.url, acked = %self.session.acked(), "authenticated");
        let pending: Vec<Frame> = self.session.resend_pending().collect();
        if !pending.is_empty() {
            tracing::debug!(count = pending.len(), "resending pending sends");
            self.write(&pending).await?;
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

    /// Replaces the token for the next HELLO (after `AUTH_EXPIRED`).
    pub fn set_token(&mut self, token: Bytes) -> Result<(), ClientError> {
        self.session.set_token(Token::new(token)?);
        Ok(())
    }

    /// Closes the current connection, if any, and connects again to the
    /// current URL: HELLO resumes after the last acked seq, and the pending
    /// sends are resent with their client ids after AUTH_OK.
    pub async fn reconnect(&mut self) -> Result<(), ClientError> {
        if let Some(mut link) = self.link.take() {
            link.close(protocol::CloseCode::NORMAL, "reconnecting").await;
        }
        self.establish().await
    }

    /// [`Client::reconnect`] to the `host:port` of a GOAWAY's `redirect`
    /// (same scheme and path), or to the current URL if it is empty. Later
    /// reconnects keep the new address.
    pub async fn reconnect_to(&mut self, redirect: &str) -> Result<(), ClientError> {
        if !redirect.is_empty() {
            self.endpoint = self.endpoint.redirect(redirect)?;
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
