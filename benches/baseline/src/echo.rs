//! `GET /echo`: every text and binary message goes back unchanged, in order.

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Error;
use tokio_tungstenite::WebSocketStream;

/// Echoes until the client closes. Pings are answered (and closes completed)
/// by tungstenite itself; only data messages are forwarded.
pub(crate) async fn run<S>(ws: WebSocketStream<S>) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (sink, stream) = ws.split();
    stream.try_filter(|message| future::ready(message.is_binary() || message.is_text())).forward(sink).await
}
