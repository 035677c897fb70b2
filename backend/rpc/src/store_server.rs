//! [`StoreService`]: the store's gRPC server side, over any [`StoreApi`]
//! (the embedded engine in the `store` binary). Each rpc converts its request,
//! hands it to the store, awaits the `Done` through a oneshot and converts the
//! outcome back: domain errors as a `Fault` in the reply, malformed requests as
//! `INVALID_ARGUMENT`.

use std::sync::Arc;

use backend_store::{Request, Response, StoreApi, StoreError};
use tokio::sync::oneshot;
use tonic::Status;

use crate::convert::request::{self, Call};
use crate::convert::response::{reply, Answer, Reply};
use crate::pb::store as pb;
use crate::pb::store::store_server::{Store, StoreServer};

/// Serves a [`StoreApi`] as the `gateway.store.v1.Store` gRPC service.
#[derive(Debug, Clone)]
pub struct StoreService {
    store: Arc<dyn StoreApi>,
}

impl StoreService {
    /// Serves `store`.
    pub fn new(store: Arc<dyn StoreApi>) -> Self {
        Self { store }
    }

    /// The tonic service to add to a `Server`, accepting messages of up to
    /// `max_message_bytes` (an inbox page of large payloads is several MiB).
    pub fn into_server(self, max_message_bytes: usize) -> StoreServer<Self> {
        StoreServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }

    /// Runs one request through the store.
    async fn run<R: Reply>(
        &self,
        call: Call,
        pick: impl FnOnce(Answer) -> Result<R::Ok, &'static str>,
    ) -> Result<tonic::Response<R>, Status> {
        let request = request::from_proto(call).map_err(|bad| Status::invalid_argument(bad.to_string()))?;
        let outcome = self.call(request).await?;
        reply(outcome, pick)
            .map(tonic::Response::new)
            .map_err(|other| Status::internal(format!("the store answered with {other}")))
    }

    async fn call(&self, request: Request) -> Result<Result<Response, StoreError>, Status> {
        let (tx, rx) = oneshot::channel();
        self.store.call(
            request,
            Box::new(move |outcome| {
                // The rpc may have been cancelled (client gone, deadline): then
                // nobody waits for the answer and dropping it is right.
                let _ = tx.send(outcome);
            }),
        );
        rx.await.map_err(|_| Status::internal("the store dropped the request unanswered"))
    }
}

/// The `ok` of one [`Answer`] variant, or the name of the variant found.
macro_rules! pick {
    ($variant:ident) => {
        |answer| match answer {
            Answer::$variant(ok) => Ok(ok),
            other => Err(other.name()),
        }
    };
}

type Answered<R> = Result<tonic::Response<R>, Status>;

#[tonic::async_trait]
impl Store for StoreService {
    async fn connect(&self, req: tonic::Request<pb::ConnectRequest>) -> Answered<pb::ConnectReply> {
        self.run(Call::Connect(req.into_inner()), pick!(Connected)).await
    }

    async fn send(&self, req: tonic::Request<pb::SendRequest>) -> Answered<pb::SendReply> {
        self.run(Call::Send(req.into_inner()), pick!(Sent)).await
    }

    async fn ack(&self, req: tonic::Request<pb::AckRequest>) -> Answered<pb::ReceiptsReply> {
        self.run(Call::Ack(req.into_inner()), pick!(Receipts)).await
    }

    async fn read(&self, req: tonic::Request<pb::ReadRequest>) -> Answered<pb::ReceiptsReply> {
        self.run(Call::Read(req.into_inner()), pick!(Receipts)).await
    }

    async fn group(&self, req: tonic::Request<pb::GroupRequest>) -> Answered<pb::GroupChangedReply> {
        self.run(Call::Group(req.into_inner()), pick!(GroupChanged)).await
    }

    async fn prekey_upload(
        &self,
        req: tonic::Request<pb::PrekeyUploadRequest>,
    ) -> Answered<pb::PrekeyUploadReply> {
        self.run(Call::PrekeyUpload(req.into_inner()), pick!(PrekeyStock)).await
    }

    async fn prekey_fetch(
        &self,
        req: tonic::Request<pb::PrekeyFetchRequest>,
    ) -> Answered<pb::PrekeyFetchReply> {
        self.run(Call::PrekeyFetch(req.into_inner()), pick!(PrekeyFetched)).await
    }

    async fn set_visibility(
        &self,
        req: tonic::Request<pb::SetVisibilityRequest>,
    ) -> Answered<pb::SetVisibilityReply> {
        self.run(Call::SetVisibility(req.into_inner()), pick!(Done)).await
    }

    async fn get_visibility(
        &self,
        req: tonic::Request<pb::GetVisibilityRequest>,
    ) -> Answered<pb::GetVisibilityReply> {
        self.run(Call::GetVisibility(req.into_inner()), pick!(Visibility)).await
    }

    async fn inbox(&self, req: tonic::Request<pb::InboxRequest>) -> Answered<pb::InboxReply> {
        self.run(Call::Inbox(req.into_inner()), pick!(Inbox)).await
    }

    async fn group_get(&self, req: tonic::Request<pb::GroupGetRequest>) -> Answered<pb::GroupGetReply> {
        self.run(Call::GroupGet(req.into_inner()), pick!(Group)).await
    }

    async fn cursors(&self, req: tonic::Request<pb::CursorsRequest>) -> Answered<pb::ReceiptsReply> {
        self.run(Call::Cursors(req.into_inner()), pick!(Cursors)).await
    }
}
