//! `GET /hub/<room>`: one member's connection. Its data messages go to the
//! room; the room's messages from others go to it.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::Error;
use tokio_tungstenite::WebSocketStream;

use crate::hub::Member;

/// Relays until the client closes. While a send to this client waits on a
/// slow socket its messages pile up in the room's channel; past the room's
/// capacity it skips the oldest (see [`crate::hub`]).
pub(crate) async fn run<S>(mut ws: WebSocketStream<S>, mut member: Member) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            incoming = ws.next() => match incoming {
                Some(message) => {
                    let message = message?;
                    if message.is_binary() || message.is_text() {
                        member.publish(message);
                    }
                }
                None => return Ok(()),
            },
            relayed = member.recv() => match relayed {
                Ok(message) => ws.send(message).await?,
                Err(RecvError::Lagged(skipped)) => tracing::debug!(skipped, "hub reader lagging"),
                Err(RecvError::Closed) => return Ok(()),
            },
        }
    }
}
