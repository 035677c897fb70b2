//! One WebSocket connection under a [`Client`](crate::Client): writing frames
//! in batched binary messages, reading messages into the [`Session`], the
//! HELLO/AUTH_OK exchange and the heartbeat.
//!
//! Every error returned here ends the connection; the client drops the link.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use protocol::limits::{MAX_CLIENT_MESSAGE_LEN, MAX_FRAMES_PER_MESSAGE};
use protocol::{CloseCode, Decoder, Frame};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::backoff::jittered;
use crate::error::ClientError;
use crate::session::Session;
use crate::transport::{self, Endpoint, Transport};

/// Server silence, in heartbeat intervals, after which the connection is dead.
const SILENT_INTERVALS: u32 = 3;
/// How long a courtesy close frame may take to go out.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Heartbeat {
    /// When the next PING goes out (re-armed with jitter after each).
    next: Pin<Box<Sleep>>,
    period: Duration,
}

#[derive(Debug)]
pub(crate) struct Link {
    ws: WebSocketStream<Transport>,
    decoder: Decoder,
    heartbeat: Option<Heartbeat>,
    last_rx: Instant,
}

impl Link {
    pub(crate) async fn open(
        endpoint: &Endpoint,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Self, ClientError> {
        let ws = transport::open(endpoint, tls).await?;
        // Server messages may batch many frames (a sync window and more).
        let decoder = Decoder::for_server_messages();
        Ok(Self { ws, decoder, heartbeat: None, last_rx: Instant::now() })
    }

    /// Sends HELLO and reads until AUTH_OK was handled by `session`. Frames
    /// after AUTH_OK in the same message are handled too (their events stay
    /// queued in the session).
    pub(crate) async fn authenticate(&mut self, session: &mut Session) -> Result<(), ClientError> {
        self.write_frames(&[session.hello()]).await?;
        while !session.is_live() {
            self.pump(session).await?;
        }
        Ok(())
    }

    /// PING every `heartbeat_ms` (±10 % jitter, SPEC §5) from now on (0: never).
    pub(crate) fn start_heartbeat(&mut self, heartbeat_ms: u32) {
        self.heartbeat = (heartbeat_ms > 0).then(|| {
            let period = Duration::from_millis(heartbeat_ms.into());
            let next = Box::pin(tokio::time::sleep(jittered(period)));
            Heartbeat { next, period }
        });
        self.last_rx = Instant::now();
    }

    pub(crate) fn heartbeat_period(&self) -> Option<Duration> {
        self.heartbeat.as_ref().map(|heartbeat| heartbeat.period)
    }

    /// Writes `frames` in as few binary messages as the client limits allow
    /// (one, unless over `MAX_CLIENT_MESSAGE_LEN` or `MAX_FRAMES_PER_MESSAGE`).
    /// `MessageTooLarge` is checked before anything is written.
    pub(crate) async fn write_frames(&mut self, frames: &[Frame]) -> Result<(), ClientError> {
        let mut total = 0;
        for frame in frames {
            let len = frame.encoded_len();
            if len > MAX_CLIENT_MESSAGE_LEN {
                return Err(ClientError::MessageTooLarge { len, max: MAX_CLIENT_MESSAGE_LEN });
            }
            total += len;
        }
        let mut out = BytesMut::with_capacity(total.min(MAX_CLIENT_MESSAGE_LEN));
        let mut count = 0;
        for frame in frames {
            if count == MAX_FRAMES_PER_MESSAGE || out.len() + frame.encoded_len() > MAX_CLIENT_MESSAGE_LEN {
                self.ws.feed(Message::Binary(out.split().freeze())).await?;
                count = 0;
            }
            frame.encode(&mut out)?;
            count += 1;
        }
        if count > 0 {
            self.ws.feed(Message::Binary(out.freeze())).await?;
        }
        self.ws.flush().await?;
        Ok(())
    }

    /// Waits for one WebSocket message or heartbeat tick and handles it:
    /// frames go to `session`, the PONGs it queues go out.
    pub(crate) async fn pump(&mut self, session: &mut Session) -> Result<(), ClientError> {
        let message = match &mut self.heartbeat {
            Some(heartbeat) => tokio::select! {
                message = self.ws.next() => Some(message),
                () = &mut heartbeat.next => None,
            },
            None => Some(self.ws.next().await),
        };
        let Some(message) = message else {
            return self.on_tick(session).await;
        };
        match message {
            Some(Ok(message)) => self.on_message(message, session).await,
            Some(Err(err)) => Err(err.into()),
            None => Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection ended without a close frame",
            ))),
        }
    }

    async fn on_tick(&mut self, session: &mut Session) -> Result<(), ClientError> {
        let Some(heartbeat) = &mut self.heartbeat else {
            return Ok(());
        };
        let period = heartbeat.period;
        heartbeat.next.as_mut().reset(Instant::now() + jittered(period));
        if self.last_rx.elapsed() >= period.saturating_mul(SILENT_INTERVALS) {
            return Err(ClientError::Timeout("heartbeat"));
        }
        let (_, ping) = session.ping();
        self.write_frames(&[ping]).await
    }

    async fn on_message(&mut self, message: Message, session: &mut Session) -> Result<(), ClientError> {
        self.last_rx = Instant::now();
        match message {
            Message::Binary(data) => self.on_binary(data, session).await,
            Message::Ping(_) => {
                // tungstenite queued the PONG; push it out now.
                self.ws.flush().await?;
                Ok(())
            }
            Message::Pong(_) | Message::Frame(_) => Ok(()),
            Message::Text(_) => {
                self.close(CloseCode::UNSUPPORTED_DATA, "binary messages only").await;
                Err(ClientError::Protocol("text message from the server".into()))
            }
            Message::Close(frame) => {
                // tungstenite queued the close reply; push it out, best effort.
                let _ = tokio::time::timeout(CLOSE_GRACE, self.ws.flush()).await;
                let (code, reason) = match frame {
                    Some(frame) => (CloseCode(frame.code.into()), frame.reason.as_str().to_owned()),
                    None => (CloseCode::NO_STATUS, String::new()),
                };
                Err(ClientError::Closed { code, reason })
            }
        }
    }

    async fn on_binary(&mut self, data: Bytes, session: &mut Session) -> Result<(), ClientError> {
        for frame in self.decoder.message(data) {
            let frame = match frame {
                Ok(frame) => frame,
                Err(err) => {
                    self.close(CloseCode::BAD_FRAME, err.name()).await;
                    return Err(err.into());
                }
            };
            if !session.is_live() {
                if let Some(err) = rejection(&frame) {
                    return Err(err);
                }
            }
            if let Err(err) = session.handle_frame(frame) {
                self.close(CloseCode::UNEXPECTED_FRAME, "unexpected frame").await;
                return Err(ClientError::Protocol(err.to_string()));
            }
        }
        let mut transmit = Vec::new();
        while let Some(frame) = session.poll_transmit() {
            transmit.push(frame);
        }
        if transmit.is_empty() {
            return Ok(());
        }
        self.write_frames(&transmit).await
    }

    /// Sends a close frame, best effort (the connection is being dropped).
    pub(crate) async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame { code: WsCloseCode::from(code.0), reason: reason.into() };
        let _ = tokio::time::timeout(CLOSE_GRACE, self.ws.close(Some(frame))).await;
    }

    /// Closes with 1000 and waits (briefly) for the server's close reply.
    pub(crate) async fn shutdown(mut self) -> Result<(), ClientError> {
        self.close(CloseCode::NORMAL, "").await;
        let drain = async {
            while let Some(message) = self.ws.next().await {
                match message {
                    // The close handshake is complete; the TCP close may follow.
                    Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => break,
                    Ok(_) => {}
                    Err(err) => return Err(ClientError::from(err)),
                }
            }
            Ok(())
        };
        tokio::time::timeout(CLOSE_GRACE, drain).await.unwrap_or(Ok(()))
    }
}

/// AUTH_ERROR, or ERROR before AUTH_OK: the session is refused.
fn rejection(frame: &Frame) -> Option<ClientError> {
    match frame {
        Frame::AuthError(err) => Some(ClientError::AuthRejected {
            code: err.code,
            retry_after_ms: err.retry_after_ms,
            text: err.text.as_str().to_owned(),
        }),
        Frame::Error(err) => Some(ClientError::AuthRejected {
            code: err.code,
            retry_after_ms: err.retry_after_ms,
            text: err.text.as_str().to_owned(),
        }),
        _ => None,
    }
}
