//! A scripted gateway peer for the integration tests: a tokio-tungstenite
//! server on 127.0.0.1:0 that accepts the upgrade on `/ws` only and hands each
//! connection to the test, which then plays the server side frame by frame.

pub(crate) mod tls;

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use client::{Client, ClientConfig};
use futures_util::{SinkExt, StreamExt};
use protocol::{
    AuthOk, Capabilities, CloseCode, Decoder, Deliver, Frame, Hello, List, Payload, Seq, SyncBatch,
    Timestamp, UserId,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Upper bound on any single wait in a test.
pub(crate) const LIMIT: Duration = Duration::from_secs(5);

/// The test user every AUTH_OK names.
pub(crate) const USER: UserId = UserId(42);

/// Awaits `future`, failing the test after [`LIMIT`].
pub(crate) async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future).await.expect("timed out")
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The listening peer; each accepted WebSocket comes out of [`Peer::accept`].
pub(crate) struct Peer {
    addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<PeerConn>,
    task: JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    pub(crate) async fn bind() -> Self {
        Self::start(None).await
    }

    pub(crate) async fn bind_tls(acceptor: TlsAcceptor) -> Self {
        Self::start(Some(acceptor)).await
    }

    async fn start(tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, conns) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let tx = tx.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let io: Box<dyn Io> = match tls {
                        None => Box::new(tcp),
                        // A failed TLS handshake is the client's to report.
                        Some(tls) => match tls.accept(tcp).await {
                            Ok(stream) => Box::new(stream),
                            Err(_) => return,
                        },
                    };
                    if let Ok(ws) = tokio_tungstenite::accept_hdr_async(io, only_ws_path).await {
                        let _ = tx.send(PeerConn::new(ws));
                    }
                });
            }
        });
        Self { addr, conns, task }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The next upgraded connection.
    pub(crate) async fn accept(&mut self) -> PeerConn {
        within(self.conns.recv()).await.expect("listener ended")
    }
}

// The signature is tungstenite's handshake callback.
#[allow(clippy::result_large_err)]
fn only_ws_path(request: &Request, response: Response) -> Result<Response, ErrorResponse> {
    if request.uri().path() == "/ws" {
        return Ok(response);
    }
    let mut refusal = ErrorResponse::new(Some("not found".into()));
    *refusal.status_mut() = StatusCode::NOT_FOUND;
    Err(refusal)
}

/// The server side of one connection.
pub(crate) struct PeerConn {
    ws: WebSocketStream<Box<dyn Io>>,
    decoder: Decoder,
    queued: VecDeque<Frame>,
}

impl PeerConn {
    fn new(ws: WebSocketStream<Box<dyn Io>>) -> Self {
        Self { ws, decoder: Decoder::new(), queued: VecDeque::new() }
    }

    /// The frames of the next binary message from the client (decoded with
    /// the server's limits). Skips WebSocket pings and pongs.
    pub(crate) async fn recv_message(&mut self) -> Vec<Frame> {
        assert!(self.queued.is_empty(), "frames of an earlier message unread: {:?}", self.queued);
        loop {
            let message = within(self.ws.next()).await.expect("client went away").expect("ws error");
            match message {
                Message::Binary(data) => {
                    return self.decoder.message(data).map(|frame| frame.expect("client frame")).collect();
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("expected a binary message, got {other:?}"),
            }
        }
    }

    /// The next frame from the client.
    pub(crate) async fn recv(&mut self) -> Frame {
        if self.queued.is_empty() {
            let frames = self.recv_message().await;
            self.queued.extend(frames);
        }
        self.queued.pop_front().expect("empty message")
    }

    pub(crate) async fn hello(&mut self) -> Hello {
        match self.recv().await {
            Frame::Hello(hello) => hello,
            other => panic!("expected HELLO, got {other:?}"),
        }
    }

    /// Sends `frames` as one binary message.
    pub(crate) async fn send(&mut self, frames: impl IntoIterator<Item = Frame>) {
        let mut out = BytesMut::new();
        for frame in frames {
            frame.encode(&mut out).unwrap();
        }
        self.send_raw(out.freeze()).await;
    }

    pub(crate) async fn send_raw(&mut self, data: Bytes) {
        within(self.ws.send(Message::Binary(data))).await.unwrap();
    }

    /// Reads HELLO and answers AUTH_OK; returns the HELLO.
    pub(crate) async fn accept_hello(&mut self, heartbeat_ms: u32) -> Hello {
        let hello = self.hello().await;
        self.send([auth_ok(&hello, heartbeat_ms)]).await;
        hello
    }

    pub(crate) async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame { code: WsCloseCode::from(code.0), reason: reason.into() };
        within(self.ws.close(Some(frame))).await.unwrap();
    }

    /// A close frame with no code (and no reason).
    pub(crate) async fn close_without_code(&mut self) {
        within(self.ws.close(None)).await.unwrap();
    }

    /// Reads until the client's close frame; returns its code.
    pub(crate) async fn recv_close(&mut self) -> Option<u16> {
        loop {
            match within(self.ws.next()).await {
                Some(Ok(Message::Close(frame))) => {
                    // Send the queued close reply, as a server would.
                    let _ = within(self.ws.flush()).await;
                    return frame.map(|frame| frame.code.into());
                }
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
}

pub(crate) fn auth_ok(hello: &Hello, heartbeat_ms: u32) -> Frame {
    Frame::AuthOk(AuthOk {
        version: hello.max_version,
        user: USER,
        device: hello.device,
        session: 1,
        server_time: Timestamp(1_700_000_000_000),
        heartbeat_ms,
        inbox_head: Seq(0),
        max_payload: 65_536,
        capabilities: hello.capabilities.intersection(Capabilities::ALL),
    })
}

pub(crate) fn deliver(seq: u64) -> Deliver {
    Deliver {
        seq: Seq(seq),
        message_id: protocol::MessageId(500 + seq),
        conversation: protocol::Conversation::Direct(UserId(7)),
        conv_seq: protocol::ConvSeq(seq),
        sender: UserId(7),
        sender_device: protocol::DeviceId(1),
        server_time: Timestamp(seq),
        payload: payload(&format!("message {seq}")),
    }
}

pub(crate) fn batch(seqs: &[u64], remaining: u64) -> Frame {
    let entries: Vec<Deliver> = seqs.iter().map(|&seq| deliver(seq)).collect();
    Frame::SyncBatch(SyncBatch { remaining, entries: List::from_items(&entries).unwrap() })
}

pub(crate) fn payload(text: &str) -> Payload {
    Payload::new(Bytes::copy_from_slice(text.as_bytes())).unwrap()
}

/// A configuration for `url` with a long heartbeat and short deadlines.
pub(crate) fn config(url: String) -> ClientConfig {
    let mut config = ClientConfig::new(url, &b"test-token"[..], protocol::DeviceId(3));
    config.connect_timeout = LIMIT;
    config.auth_timeout = LIMIT;
    config
}

/// [`connected_with`] the default [`config`] for `peer`.
pub(crate) async fn connected(peer: &mut Peer, heartbeat_ms: u32) -> (Client, PeerConn) {
    let config = config(peer.url());
    connected_with(peer, config, heartbeat_ms).await
}

/// Connects a client to `peer` and authenticates it (heartbeat `heartbeat_ms`);
/// the `Authenticated` event is consumed.
pub(crate) async fn connected_with(
    peer: &mut Peer,
    config: ClientConfig,
    heartbeat_ms: u32,
) -> (Client, PeerConn) {
    let (client, conn) = within(async {
        tokio::join!(Client::connect(config), async {
            let mut conn = peer.accept().await;
            conn.accept_hello(heartbeat_ms).await;
            conn
        })
    })
    .await;
    let mut client = client.expect("connect");
    let first = within(client.next_event()).await.unwrap();
    assert!(matches!(first, client::Event::Authenticated(_)), "first event {first:?}");
    (client, conn)
}
