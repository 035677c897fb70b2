//! Memory per idle link if the links were tonic gRPC bidirectional streams
//! (HTTP/2 over plain TCP) instead of our framed TCP, measured exactly as
//! `link_memory` does: `N` clients and one server in one process on
//! loopback, each client its own `Channel` (its own HTTP/2 connection, as
//! `N` peer nodes would have) with one bidi stream open and one small
//! message through it, then the process's PSS (`/proc/self/smaps_rollup`)
//! before and after, divided by `N`. Default tonic settings throughout.
//!
//! `cargo run --release -p routing-links --example tonic_link_memory -- 399`

// A measurement tool: any failure ends it, saying where.
#![allow(clippy::expect_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder, Streaming};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::tokio_stream::{self, Pending};
use tonic::codegen::{http, BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Endpoint, Server};
use tonic::{Request, Response, Status};

mod common;
use common::pss_kib;

/// The one method: a client streams link frames to the server.
const CARRY: &str = "/links.Link/Carry";

/// Messages are raw bytes, so no protobuf (and no build script) is needed.
#[derive(Clone, Copy)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The server: what `tonic-build` would generate for a service with one
/// bidirectional-streaming method, by hand.
#[derive(Clone)]
struct Link {
    counted: Arc<AtomicU64>,
}

impl NamedService for Link {
    const NAME: &'static str = "links.Link";
}

impl Service<http::Request<Body>> for Link {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let carry = Carry { counted: self.counted.clone() };
        Box::pin(async move { Ok(tonic::server::Grpc::new(Raw).streaming(carry, request).await) })
    }
}

/// The method's handler: a task per stream reads the inbound frames
/// (counting them) for as long as the stream lives; the server sends
/// nothing back, like our acceptor, so its response stream stays pending.
struct Carry {
    counted: Arc<AtomicU64>,
}

impl Service<Request<Streaming<Bytes>>> for Carry {
    type Response = Response<Pending<Result<Bytes, Status>>>;
    type Error = Status;
    type Future = BoxFuture<Self::Response, Status>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let counted = self.counted.clone();
        let mut inbound = request.into_inner();
        tokio::spawn(async move {
            while let Ok(Some(_)) = inbound.message().await {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        });
        Box::pin(async { Ok(Response::new(tokio_stream::pending())) })
    }
}

fn main() {
    let links: u64 = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(399);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let counted = Arc::new(AtomicU64::new(0));
        let server = Server::builder().add_service(Link { counted: counted.clone() });
        tokio::spawn(server.serve_with_incoming(TcpIncoming::from(listener)));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let before = pss_kib();
        let endpoint = Endpoint::from_shared(format!("http://{address}")).expect("endpoint");
        let mut streams = Vec::new();
        for _ in 0..links {
            // Each channel is "another node": its own HTTP/2 connection.
            let channel = endpoint.connect().await.expect("connect");
            let mut client = tonic::client::Grpc::new(channel);
            client.ready().await.expect("ready");
            // The sender is the link's outbound queue.
            let (sender, receiver) = tokio::sync::mpsc::channel(64);
            sender.send(Bytes::from_static(b"LIVE tail")).await.expect("queue");
            let request = Request::new(ReceiverStream::new(receiver));
            let inbound = client
                .streaming(request, PathAndQuery::from_static(CARRY), Raw)
                .await
                .expect("stream")
                .into_inner();
            streams.push((client, sender, inbound));
        }
        while counted.load(Ordering::Relaxed) < links {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = pss_kib();
        println!(
            "{links} tonic links up, one message through each: PSS {before} KiB -> {after} KiB, \
             {:.1} KiB per link (both ends, user space)",
            (after.saturating_sub(before)) as f64 / links as f64
        );
        drop(streams);
    });
}
