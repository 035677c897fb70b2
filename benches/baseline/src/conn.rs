//! One accepted connection: the optional TLS handshake, the WebSocket upgrade
//! (404 for unknown paths) and the route's handler.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Error;

use crate::hub::{Hub, Member};
use crate::route::Route;
use crate::{echo, relay};

/// What the upgrade request asked for, resolved during the handshake.
#[derive(Debug)]
enum Session {
    Echo,
    /// Joined before the 101 goes out: a client that has its upgrade response
    /// is already in the room.
    Hub(Member),
}

/// Serves `tcp` (through TLS when `tls` is set) until the client leaves.
pub(crate) async fn serve(tcp: TcpStream, tls: Option<TlsAcceptor>, hub: Arc<Hub>) -> Result<(), Error> {
    // Small messages should leave at once rather than wait for an ACK.
    tcp.set_nodelay(true)?;
    match tls {
        Some(acceptor) => upgrade(acceptor.accept(tcp).await?, &hub).await,
        None => upgrade(tcp, &hub).await,
    }
}

async fn upgrade<S>(stream: S, hub: &Arc<Hub>) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = None;
    // The signature is tungstenite's handshake callback.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        match Route::parse(request.uri().path()) {
            Some(Route::Echo) => session = Some(Session::Echo),
            Some(Route::Hub(room)) => session = Some(Session::Hub(hub.join(room))),
            None => return Err(not_found()),
        }
        Ok(response)
    };
    let ws = tokio_tungstenite::accept_hdr_async(stream, callback).await?;
    match session {
        Some(Session::Echo) => echo::run(ws).await,
        Some(Session::Hub(member)) => relay::run(ws, member).await,
        // The callback accepted the request only after choosing a session.
        None => Ok(()),
    }
}

fn not_found() -> ErrorResponse {
    let mut response = ErrorResponse::new(Some("not found".to_owned()));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}
