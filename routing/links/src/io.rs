//! Reading frames off a long-lived link without holding a buffer while it
//! is idle: a node holds up to a few hundred links, most of them quiet at
//! any moment, and a 16 KiB read buffer each would be most of an idle
//! node's memory. The buffer is taken only when the socket is readable and
//! given back once every whole frame in it is decoded.

use std::io;

use bytes::BytesMut;
use routing::link::LinkFrame;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

use crate::LinkFailure;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 << 10;

/// A socket (or its read half) that can wait for readability.
pub(crate) trait Readable {
    async fn readable(&self) -> io::Result<()>;
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize>;
}

impl Readable for TcpStream {
    async fn readable(&self) -> io::Result<()> {
        TcpStream::readable(self).await
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        TcpStream::try_read_buf(self, buf)
    }
}

impl Readable for OwnedReadHalf {
    async fn readable(&self) -> io::Result<()> {
        OwnedReadHalf::readable(self).await
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        OwnedReadHalf::try_read_buf(self, buf)
    }
}

/// The next frame and its size on the wire; `None` at the end of the
/// stream.
pub(crate) async fn next_frame(
    stream: &impl Readable,
    input: &mut BytesMut,
) -> Result<Option<(LinkFrame, usize)>, LinkFailure> {
    loop {
        let before = input.len();
        if let Some(frame) = LinkFrame::decode(input)? {
            return Ok(Some((frame, before - input.len())));
        }
        if input.is_empty() && input.capacity() > 0 {
            // Idle from here on, maybe for long: no buffer held meanwhile.
            *input = BytesMut::new();
        }
        stream.readable().await?;
        input.reserve(READ_CHUNK);
        match stream.try_read_buf(input) {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err.into()),
        }
    }
}
