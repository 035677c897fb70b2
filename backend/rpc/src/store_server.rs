//! [`StoreService`]: the store's gRPC server side, over any [`StoreApi`]
//! (the embedded engine in the `store` binary).
//!
//! Each `Pipeline` stream gets a reader task that takes the envelopes in
//! arrival order and hands each to the store before reading the next; since
//! [`StoreApi::call`] never blocks, the store's queue order is the stream's
//! order. Completions (on the store's threads, in any order) put their reply
//! into a slot reserved before the request was read, and the response stream
//! sends the replies as they come. At most [`WINDOW`] requests of one stream
//! are unanswered: with no free slot the reader stops reading and HTTP/2 flow
//! control pushes back on the client.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use backend_store::{Response, StoreApi, StoreError};
use prost::Message as _;
use tokio::sync::mpsc::{self, OwnedPermit};
use tokio::sync::watch;
use tonic::codegen::tokio_stream::Stream;
use tonic::{Code, Status, Streaming};

use crate::convert::pipeline::{failure, reply_to_proto};
use crate::convert::request::{self, Kind};
use crate::pb::store as pb;
use crate::pb::store::store_server::{Store, StoreServer};

/// Most requests of one pipeline stream that the store has not answered yet
/// (or whose replies are not sent yet); the reader waits for a free slot
/// before it reads the next envelope.
const WINDOW: usize = 4096;

/// Serves a [`StoreApi`] as the `gateway.store.v1.Store` gRPC service.
#[derive(Debug, Clone)]
pub struct StoreService {
    store: Arc<dyn StoreApi>,
    max_message_bytes: usize,
    /// `true` once [`StoreService::close`] was called; every reader watches it.
    closing: watch::Sender<bool>,
}

impl StoreService {
    /// Serves `store`.
    pub fn new(store: Arc<dyn StoreApi>) -> Self {
        Self { store, max_message_bytes: usize::MAX, closing: watch::Sender::new(false) }
    }

    /// The tonic service to add to a `Server`, accepting messages of up to
    /// `max_message_bytes` (an inbox page of large payloads is several MiB).
    /// A reply larger than that is answered as a failed call (`OUT_OF_RANGE`)
    /// instead of breaking the stream.
    pub fn into_server(mut self, max_message_bytes: usize) -> StoreServer<Self> {
        self.max_message_bytes = max_message_bytes;
        StoreServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }

    /// Starts a graceful stop, on this service and every clone of it: each
    /// pipeline stream, open or opened later, stops reading requests, sends
    /// the replies of those it already handed to the store and ends with OK.
    /// Call it when the server stops accepting, so that the server's graceful
    /// shutdown does not wait for clients to end their streams.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}

#[tonic::async_trait]
impl Store for StoreService {
    type PipelineStream = Replies;

    async fn pipeline(
        &self,
        request: tonic::Request<Streaming<pb::Envelope>>,
    ) -> Result<tonic::Response<Replies>, Status> {
        let (slots, replies) = mpsc::channel(WINDOW);
        let reader = Reader { store: Arc::clone(&self.store), closing: self.closing.subscribe(), slots };
        let _detached = tokio::spawn(reader.run(request.into_inner()));
        Ok(tonic::Response::new(Replies { replies, max_message_bytes: self.max_message_bytes }))
    }
}

/// One stream's reader: envelopes in, store calls out, in order.
struct Reader {
    store: Arc<dyn StoreApi>,
    closing: watch::Receiver<bool>,
    slots: mpsc::Sender<Reply>,
}

impl Reader {
    /// Reads until the client ends its side, the stream fails or the service
    /// closes. The response stream ends once the last slot is used.
    async fn run(mut self, mut inbound: Streaming<pb::Envelope>) {
        loop {
            // A slot first, so that a read request always has room for its
            // reply and completions never wait.
            let slot = tokio::select! {
                biased;
                () = closed(&mut self.closing) => return,
                slot = self.slots.clone().reserve_owned() => match slot {
                    Ok(slot) => slot,
                    // The response stream is gone: nobody would hear the replies.
                    Err(_) => return,
                },
            };
            let envelope = tokio::select! {
                biased;
                () = closed(&mut self.closing) => return,
                next = inbound.message() => match next {
                    Ok(Some(envelope)) => envelope,
                    Ok(None) => return,
                    Err(status) => {
                        tracing::debug!(code = ?status.code(), message = status.message(), "pipeline stream failed");
                        return;
                    }
                },
            };
            self.submit(envelope, slot);
        }
    }

    /// Hands one request to the store (non-blocking); its reply goes into
    /// `slot`. A malformed request is answered at once, without the store.
    fn submit(&self, envelope: pb::Envelope, slot: OwnedPermit<Reply>) {
        let id = envelope.id;
        let Some(call) = envelope.request else {
            let why = "field `Envelope.request`: required, absent".to_owned();
            slot.send(Reply { id, body: Body::Failed(Code::InvalidArgument, why) });
            return;
        };
        let kind = Kind::of(&call);
        match request::from_proto(call) {
            Ok(request) => {
                let mut slot = Slot { id, kind, permit: Some(slot) };
                self.store.call(request, Box::new(move |outcome| slot.fill(outcome)));
            }
            Err(bad) => {
                slot.send(Reply { id, body: Body::Failed(Code::InvalidArgument, bad.to_string()) });
            }
        }
    }
}

/// Resolves once the service is closing (never if every sender is gone: the
/// server is being dropped and the stream goes with it).
async fn closed(closing: &mut watch::Receiver<bool>) {
    if closing.wait_for(|closing| *closing).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Where one request's outcome goes. Filled once by the store's `Done`; if
/// the store drops it unanswered (a store bug), the request is answered as an
/// `INTERNAL` failure, so the client never waits for nothing.
struct Slot {
    id: u64,
    kind: Kind,
    permit: Option<OwnedPermit<Reply>>,
}

impl Slot {
    fn fill(&mut self, outcome: Result<Response, StoreError>) {
        if let Some(permit) = self.permit.take() {
            // Never waits: the slot was reserved. A gone client discards it.
            permit.send(Reply { id: self.id, body: Body::Outcome(self.kind, outcome) });
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            let why = "the store dropped the request unanswered".to_owned();
            permit.send(Reply { id: self.id, body: Body::Failed(Code::Internal, why) });
        }
    }
}

/// A reply on its way out, still native: the proto conversion happens when
/// the response stream sends it, on the runtime, not on the store's writer.
#[derive(Debug)]
struct Reply {
    id: u64,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Outcome(Kind, Result<Response, StoreError>),
    Failed(Code, String),
}

impl Reply {
    fn into_proto(self, max_message_bytes: usize) -> pb::EnvelopeReply {
        let id = self.id;
        let field = match self.body {
            Body::Outcome(kind, outcome) => reply_to_proto(kind, outcome).unwrap_or_else(|other| {
                failure(
                    Code::Internal,
                    format!("the store answered a `{}` request with {other}", kind.name()),
                )
            }),
            Body::Failed(code, why) => failure(code, why),
        };
        let reply = pb::EnvelopeReply { id, reply: Some(field) };
        let len = reply.encoded_len();
        if len <= max_message_bytes {
            return reply;
        }
        let why = format!("the reply is {len} bytes, more than the largest message ({max_message_bytes})");
        pb::EnvelopeReply { id, reply: Some(failure(Code::OutOfRange, why)) }
    }
}

/// A pipeline's response stream: the replies in completion order. Ends when
/// the reader has stopped and every slot it reserved was sent.
#[derive(Debug)]
pub struct Replies {
    replies: mpsc::Receiver<Reply>,
    max_message_bytes: usize,
}

impl Stream for Replies {
    type Item = Result<pb::EnvelopeReply, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let max = this.max_message_bytes;
        this.replies.poll_recv(cx).map(|reply| reply.map(|reply| Ok(reply.into_proto(max))))
    }
}
