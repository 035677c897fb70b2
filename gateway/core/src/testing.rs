//! Client-side bytes for tests of the session core and of what drives it
//! (the hub): an upgrade request, masked client frames and messages, and a
//! parser for what the server writes. Compiled for this crate's tests and,
//! with the `testing` feature, for other crates' tests; never in a build
//! that serves clients.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use gateway_ws::HandshakeConfig;
use protocol::{
    ConvSeq, Conversation, Decoder, Deliver, DeviceId, Frame, MessageId, Payload, Seq, Timestamp, UserId,
};

use crate::{Config, Limits};

/// Session settings for tests: small outbound bounds (4 KiB pause, 16 KiB
/// max), two entries per sync window, 100 frames/s with a burst of 20.
pub fn config() -> Config {
    Config {
        handshake: HandshakeConfig { echo: true, ..HandshakeConfig::default() },
        handshake_timeout: Duration::from_secs(5),
        auth_timeout: Duration::from_secs(10),
        heartbeat: Duration::from_secs(30),
        heartbeat_misses: 3,
        max_message: protocol::limits::MAX_CLIENT_MESSAGE_LEN,
        outbound: Limits { pause_bytes: 4096, max_bytes: 16_384 },
        outbound_preauth: 1024,
        echo_max_message: 1 << 20,
        write_stall: Duration::from_secs(30),
        linger: Duration::from_secs(2),
        decoder: Decoder::new(),
        rate: Some(crate::RateLimit { per_sec: 100, burst: 20 }),
        sync_window: 2,
    }
}

/// Inbox entry `seq` of a direct conversation with user 9.
pub fn entry(seq: u64) -> Deliver {
    Deliver {
        seq: Seq(seq),
        message_id: MessageId(1000 + seq),
        conversation: Conversation::Direct(UserId(9)),
        conv_seq: ConvSeq(seq),
        sender: UserId(9),
        sender_device: DeviceId(1),
        server_time: Timestamp(1_700_000_000_000 + seq),
        payload: Payload::new(Bytes::from(format!("message {seq}"))).unwrap(),
    }
}

/// What the session wrote, parsed.
#[derive(Debug, PartialEq)]
pub enum Out {
    Http(String),
    Frame(Frame),
    Text(String),
    Ping,
    Pong,
    Close(u16),
}

pub fn upgrade(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A masked client WebSocket frame (FIN set).
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A binary message carrying `frames`.
pub fn message(frames: &[Frame]) -> Vec<u8> {
    let mut payload = BytesMut::new();
    for frame in frames {
        frame.encode(&mut payload).unwrap();
    }
    client_frame(0x2, &payload)
}

pub fn close_frame(code: u16) -> Vec<u8> {
    client_frame(0x8, &code.to_be_bytes())
}

pub fn parse_server_output(buf: &mut BytesMut) -> Vec<Out> {
    let mut out = Vec::new();
    loop {
        if buf.starts_with(b"HTTP/1.1") {
            let end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("complete response") + 4;
            out.push(Out::Http(String::from_utf8(buf.split_to(end).to_vec()).unwrap()));
            continue;
        }
        if buf.len() < 2 {
            return out;
        }
        assert_eq!(buf[1] & 0x80, 0, "server frames are never masked");
        let (len, header) = match buf[1] & 0x7f {
            126 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        if buf.len() < header + len {
            return out;
        }
        let opcode = buf[0] & 0x0f;
        buf.advance(header);
        let payload = buf.split_to(len).freeze();
        match opcode {
            0x1 => out.push(Out::Text(String::from_utf8(payload.to_vec()).unwrap())),
            0x2 => {
                for frame in Decoder::for_server_messages().message(payload) {
                    out.push(Out::Frame(frame.unwrap()));
                }
            }
            0x8 => out.push(Out::Close(u16::from_be_bytes([payload[0], payload[1]]))),
            0x9 => out.push(Out::Ping),
            0xa => out.push(Out::Pong),
            other => panic!("unexpected opcode {other}"),
        }
    }
}
