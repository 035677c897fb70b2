//! [`PushService`]: the push service's gRPC server side, over any
//! [`PushApi`] (the embedded service in the `push` binary). Both rpcs hand
//! their batch on item by item; `PushApi` never blocks, so neither do they.

use std::sync::Arc;

use backend_push::PushApi;
use tonic::Status;

use crate::convert::push::{device_from_proto, note_from_proto};
use crate::pb::push as pb;
use crate::pb::push::push_server::{Push, PushServer};

/// Serves a [`PushApi`] as the `gateway.push.v1.Push` gRPC service.
#[derive(Debug, Clone)]
pub struct PushService {
    push: Arc<dyn PushApi>,
}

impl PushService {
    /// Serves `push`.
    pub fn new(push: Arc<dyn PushApi>) -> Self {
        Self { push }
    }

    /// The tonic service to add to a `Server`, accepting messages of up to
    /// `max_message_bytes`.
    pub fn into_server(self, max_message_bytes: usize) -> PushServer<Self> {
        PushServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

/// A batch length as the reply's count (batches are far below `u32::MAX`).
fn count(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[tonic::async_trait]
impl Push for PushService {
    async fn notify(
        &self,
        request: tonic::Request<pb::NoteBatch>,
    ) -> Result<tonic::Response<pb::Accepted>, Status> {
        // Convert all first: a malformed batch is refused whole, not half sent.
        let notes = request
            .into_inner()
            .notes
            .into_iter()
            .map(note_from_proto)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|bad| Status::invalid_argument(bad.to_string()))?;
        let accepted = count(notes.len());
        for note in notes {
            self.push.notify(note);
        }
        Ok(tonic::Response::new(pb::Accepted { count: accepted }))
    }

    async fn connected(
        &self,
        request: tonic::Request<pb::DeviceBatch>,
    ) -> Result<tonic::Response<pb::Accepted>, Status> {
        let devices = request.into_inner().devices;
        let accepted = count(devices.len());
        for device in devices {
            let (user, device) = device_from_proto(device);
            self.push.connected(user, device);
        }
        Ok(tonic::Response::new(pb::Accepted { count: accepted }))
    }
}
