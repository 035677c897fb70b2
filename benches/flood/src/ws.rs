//! The client side of RFC 6455, as small as a load tool needs: the upgrade
//! request and the check of its `101` answer, masked client frames out, and a
//! reader of the server's (unmasked) frames that reassembles fragmented
//! messages.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{Buf as _, Bytes, BytesMut};
use ring::digest;

/// Continuation frame.
pub(crate) const OP_CONTINUATION: u8 = 0x0;
/// Text message.
pub(crate) const OP_TEXT: u8 = 0x1;
/// Binary message (the protocol's only kind).
pub(crate) const OP_BINARY: u8 = 0x2;
/// Close.
pub(crate) const OP_CLOSE: u8 = 0x8;
/// Control ping.
pub(crate) const OP_PING: u8 = 0x9;
/// Control pong.
pub(crate) const OP_PONG: u8 = 0xA;

/// Close code of a normal close.
pub(crate) const CLOSE_NORMAL: u16 = 1000;

const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest HTTP response head accepted for the upgrade.
pub(crate) const MAX_HEAD: usize = 8 * 1024;

/// Appends one masked client frame (FIN set) carrying `payload` to `out`.
/// RFC 6455 §5.3: every client frame is masked, with a key the server cannot
/// predict (the caller draws it from its generator).
pub(crate) fn encode_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.reserve(14 + payload.len());
    out.push(0x80 | (opcode & 0x0f));
    let len = payload.len();
    if len < 126 {
        // len < 126 fits the 7-bit field.
        out.push(0x80 | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// A close frame's payload: the code, big-endian (no reason text).
pub(crate) fn close_payload(code: u16) -> [u8; 2] {
    code.to_be_bytes()
}

/// Why the server's byte stream is not valid WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WsError {
    /// A server frame with the mask bit (RFC 6455 §5.1 forbids it).
    Masked,
    /// RSV bits set without a negotiated extension.
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    UnknownOpcode(u8),
    /// A 126 or 127 length form used for a length the shorter form holds, or a
    /// 64-bit length with the top bit set.
    NonMinimalLength,
    /// A frame or message over the limit.
    TooLarge(u64),
    /// A control frame with a payload over 125 bytes, or fragmented.
    BadControl,
    /// A continuation without a message in progress, or a new data frame
    /// while one is.
    BadFragmentation,
}

impl WsError {
    /// Short name for error counters.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::Masked => "ws_masked",
            Self::ReservedBits => "ws_reserved_bits",
            Self::UnknownOpcode(_) => "ws_unknown_opcode",
            Self::NonMinimalLength => "ws_non_minimal_length",
            Self::TooLarge(_) => "ws_too_large",
            Self::BadControl => "ws_bad_control",
            Self::BadFragmentation => "ws_bad_fragmentation",
        }
    }
}

/// A parsed server frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Last frame of its message.
    pub(crate) fin: bool,
    /// Opcode.
    pub(crate) opcode: u8,
    /// Bytes of header (2, 4 or 10).
    pub(crate) header_len: usize,
    /// Payload bytes that follow the header.
    pub(crate) payload_len: usize,
}

/// Parses the header of a server frame at the front of `buf`: `Ok(None)` if
/// the header is not complete yet. A length above `max_payload` is refused as
/// soon as it is read.
pub(crate) fn parse_server_header(buf: &[u8], max_payload: usize) -> Result<Option<Header>, WsError> {
    let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::ReservedBits);
    }
    if b1 & 0x80 != 0 {
        return Err(WsError::Masked);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    if !matches!(opcode, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
        return Err(WsError::UnknownOpcode(opcode));
    }
    let (len, header_len) = match b1 & 0x7f {
        126 => {
            let Some(&[hi, lo]) = buf.get(2..4) else { return Ok(None) };
            let len = u64::from(u16::from_be_bytes([hi, lo]));
            if len < 126 {
                return Err(WsError::NonMinimalLength);
            }
            (len, 4)
        }
        127 => {
            let Some(ext) = buf.get(2..10).and_then(|ext| <[u8; 8]>::try_from(ext).ok()) else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(ext);
            if len <= 0xffff || len >> 63 != 0 {
                return Err(WsError::NonMinimalLength);
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    let is_control = opcode & 0x08 != 0;
    if is_control && (len > 125 || !fin) {
        return Err(WsError::BadControl);
    }
    if len > max_payload as u64 {
        return Err(WsError::TooLarge(len));
    }
    // len <= max_payload, a usize.
    Ok(Some(Header { fin, opcode, header_len, payload_len: len as usize }))
}

/// A complete message (or control frame) from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    /// A binary message, reassembled.
    Binary(Bytes),
    /// A text message (the protocol never sends one).
    Text,
    /// A close frame and its code (`None`: no code).
    Close(Option<u16>),
    /// A control ping; answer with a pong carrying the same bytes.
    Ping(Bytes),
    /// A control pong.
    Pong,
}

/// Reads server messages off a byte buffer, one frame at a time, keeping the
/// fragments of a message in progress.
#[derive(Debug, Default)]
pub(crate) struct MessageReader {
    /// Opcode and bytes so far of a fragmented message.
    partial: Option<(u8, BytesMut)>,
}

impl MessageReader {
    /// Takes the next message off the front of `buf`, consuming its bytes;
    /// `Ok(None)` when `buf` holds no complete frame (what it holds stays).
    /// Messages are at most `max_message` bytes, fragments included.
    pub(crate) fn next(
        &mut self,
        buf: &mut BytesMut,
        max_message: usize,
    ) -> Result<Option<Message>, WsError> {
        loop {
            let Some(header) = parse_server_header(buf, max_message)? else {
                return Ok(None);
            };
            if buf.len() - header.header_len < header.payload_len {
                return Ok(None);
            }
            buf.advance(header.header_len);
            let payload = buf.split_to(header.payload_len).freeze();
            match header.opcode {
                OP_CLOSE => {
                    let code = match payload.get(..2) {
                        Some(&[hi, lo]) => Some(u16::from_be_bytes([hi, lo])),
                        _ => None,
                    };
                    return Ok(Some(Message::Close(code)));
                }
                OP_PING => return Ok(Some(Message::Ping(payload))),
                OP_PONG => return Ok(Some(Message::Pong)),
                OP_CONTINUATION => {
                    let Some((opcode, mut bytes)) = self.partial.take() else {
                        return Err(WsError::BadFragmentation);
                    };
                    let total = bytes.len() + payload.len();
                    if total > max_message {
                        return Err(WsError::TooLarge(total as u64));
                    }
                    bytes.extend_from_slice(&payload);
                    if header.fin {
                        return Ok(Some(Self::data(opcode, bytes.freeze())));
                    }
                    self.partial = Some((opcode, bytes));
                }
                opcode => {
                    if self.partial.is_some() {
                        return Err(WsError::BadFragmentation);
                    }
                    if header.fin {
                        return Ok(Some(Self::data(opcode, payload)));
                    }
                    self.partial = Some((opcode, BytesMut::from(payload.as_ref())));
                }
            }
        }
    }

    fn data(opcode: u8, payload: Bytes) -> Message {
        if opcode == OP_TEXT {
            Message::Text
        } else {
            Message::Binary(payload)
        }
    }
}

/// The `Sec-WebSocket-Key` flood sends: RFC 6455 wants a fresh random nonce per
/// connection so that intermediaries cannot replay answers; on loopback with
/// no intermediary, one fixed key (whose answer is computed once) is enough.
pub(crate) const UPGRADE_KEY: &str = "Zmxvb2QtbG9hZC10b29sIQ==";

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + GUID)).
pub(crate) fn accept_for(key: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(WS_GUID);
    STANDARD.encode(ctx.finish())
}

/// The HTTP/1.1 upgrade request for `path` on `host`.
pub(crate) fn upgrade_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Why an upgrade failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpgradeError {
    /// The server answered with this status instead of 101.
    Status(u16),
    /// 101 without the right `Sec-WebSocket-Accept` (or `Upgrade`) header.
    BadAccept,
    /// Not an HTTP/1.1 response, or a head over [`MAX_HEAD`].
    Malformed,
}

impl UpgradeError {
    /// Short name for error counters: `http_429`, `upgrade_bad_accept`, ...
    pub(crate) fn kind(self) -> String {
        match self {
            Self::Status(status) => format!("http_{status}"),
            Self::BadAccept => "upgrade_bad_accept".to_owned(),
            Self::Malformed => "upgrade_malformed".to_owned(),
        }
    }
}

/// Parses the server's answer to the upgrade at the front of `buf`:
/// `Ok(Some(head_len))` for a valid `101` whose `Sec-WebSocket-Accept` is
/// `accept` (WebSocket frames may follow the head in `buf`), `Ok(None)` while
/// the head is incomplete.
pub(crate) fn parse_upgrade_response(buf: &[u8], accept: &str) -> Result<Option<usize>, UpgradeError> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) | Err(_) => return Err(UpgradeError::Malformed),
    };
    let status = response.code.unwrap_or(0);
    if status != 101 {
        return Err(UpgradeError::Status(status));
    }
    let header =
        |name: &str| response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value);
    let upgrade_ok = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket"));
    let accept_ok = header("sec-websocket-accept").is_some_and(|v| v == accept.as_bytes());
    if upgrade_ok && accept_ok {
        Ok(Some(head_len))
    } else {
        Err(UpgradeError::BadAccept)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Unmasks a client frame as a server would: (opcode, payload).
    fn server_view(frame: &[u8]) -> (u8, Vec<u8>) {
        assert_eq!(frame[0] & 0x80, 0x80, "FIN");
        assert_eq!(frame[1] & 0x80, 0x80, "mask bit");
        let (len, at) = match frame[1] & 0x7f {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize, 10),
            n => (n as usize, 2),
        };
        let mask = &frame[at..at + 4];
        let body = &frame[at + 4..];
        assert_eq!(body.len(), len);
        (frame[0] & 0x0f, body.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect())
    }

    #[test]
    fn client_frame_matches_rfc_6455_example() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let mut out = Vec::new();
        encode_client_frame(&mut out, OP_TEXT, b"Hello", MASK);
        assert_eq!(out, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn client_frames_are_masked_in_every_length_form() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10), (300_000, 10)] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            encode_client_frame(&mut out, OP_BINARY, &payload, MASK);
            assert_eq!(out.len(), header + 4 + len, "len {len}");
            if len > 0 {
                assert_ne!(&out[header + 4..], &payload[..], "payload must not travel in clear");
            }
            assert_eq!(server_view(&out), (OP_BINARY, payload));
        }
    }

    #[test]
    fn close_frame_carries_the_code() {
        let mut out = Vec::new();
        encode_client_frame(&mut out, OP_CLOSE, &close_payload(CLOSE_NORMAL), MASK);
        assert_eq!(server_view(&out), (OP_CLOSE, vec![0x03, 0xe8]));
    }

    /// An unmasked server frame.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    fn read_all(bytes: &[u8], max: usize) -> Result<Vec<Message>, WsError> {
        let mut reader = MessageReader::default();
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(message) = reader.next(&mut buf, max)? {
            out.push(message);
        }
        assert!(buf.is_empty(), "{} bytes left", buf.len());
        Ok(out)
    }

    #[test]
    fn parses_server_frames_in_all_three_length_forms() {
        for len in [0usize, 5, 125, 126, 1000, 65_535, 65_536, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let frame = server_frame(true, OP_BINARY, &payload);
            let header = parse_server_header(&frame, 1 << 20).unwrap().unwrap();
            let expected_header = if len < 126 {
                2
            } else if len <= 0xffff {
                4
            } else {
                10
            };
            assert_eq!(
                header,
                Header { fin: true, opcode: OP_BINARY, header_len: expected_header, payload_len: len }
            );
            assert_eq!(read_all(&frame, 1 << 20).unwrap(), vec![Message::Binary(payload.into())]);
        }
    }

    #[test]
    fn incomplete_input_waits_and_keeps_its_bytes() {
        let frame = server_frame(true, OP_BINARY, &[7u8; 300]);
        let mut reader = MessageReader::default();
        for cut in [0, 1, 2, 3, 4, 100, frame.len() - 1] {
            let mut buf = BytesMut::from(&frame[..cut]);
            assert_eq!(reader.next(&mut buf, 1 << 20), Ok(None), "cut {cut}");
            assert_eq!(buf.len(), cut);
        }
        let mut long = server_frame(true, OP_BINARY, &[1u8; 70_000]);
        long.truncate(9);
        assert_eq!(parse_server_header(&long, 1 << 20), Ok(None));
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut bytes = server_frame(true, OP_BINARY, b"one");
        bytes.extend(server_frame(true, OP_PING, b"p"));
        bytes.extend(server_frame(true, OP_PONG, b""));
        bytes.extend(server_frame(true, OP_TEXT, b"t"));
        bytes.extend(server_frame(true, OP_CLOSE, &[0x0f, 0xa6]));
        assert_eq!(
            read_all(&bytes, 1024).unwrap(),
            vec![
                Message::Binary(Bytes::from_static(b"one")),
                Message::Ping(Bytes::from_static(b"p")),
                Message::Pong,
                Message::Text,
                Message::Close(Some(4006)),
            ]
        );
        assert_eq!(read_all(&server_frame(true, OP_CLOSE, b""), 10).unwrap(), vec![Message::Close(None)]);
    }

    #[test]
    fn fragments_are_reassembled_around_control_frames() {
        let mut bytes = server_frame(false, OP_BINARY, b"ab");
        bytes.extend(server_frame(true, OP_PING, b""));
        bytes.extend(server_frame(false, OP_CONTINUATION, b"cd"));
        bytes.extend(server_frame(true, OP_CONTINUATION, b"e"));
        assert_eq!(
            read_all(&bytes, 1024).unwrap(),
            vec![Message::Ping(Bytes::new()), Message::Binary(Bytes::from_static(b"abcde"))]
        );
        // The reassembled message counts against the limit.
        let mut bytes = server_frame(false, OP_BINARY, &[0; 6]);
        bytes.extend(server_frame(true, OP_CONTINUATION, &[0; 6]));
        assert_eq!(read_all(&bytes, 10), Err(WsError::TooLarge(12)));
    }

    #[test]
    fn protocol_violations_are_refused() {
        let masked = [0x82, 0x81, 1, 2, 3, 4, 0];
        assert_eq!(parse_server_header(&masked, 100), Err(WsError::Masked));
        assert_eq!(parse_server_header(&[0xc2, 0x00], 100), Err(WsError::ReservedBits));
        assert_eq!(parse_server_header(&[0x83, 0x00], 100), Err(WsError::UnknownOpcode(3)));
        assert_eq!(parse_server_header(&[0x82, 126, 0, 125], 100), Err(WsError::NonMinimalLength));
        assert_eq!(
            parse_server_header(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff], 1 << 20),
            Err(WsError::NonMinimalLength)
        );
        assert_eq!(
            parse_server_header(&[0x82, 127, 0x80, 0, 0, 0, 0, 1, 0, 0], u64::MAX as usize),
            Err(WsError::NonMinimalLength)
        );
        assert_eq!(parse_server_header(&[0x82, 126, 1, 0], 100), Err(WsError::TooLarge(256)));
        assert_eq!(parse_server_header(&[0x89, 126, 0, 126], 1000), Err(WsError::BadControl));
        assert_eq!(parse_server_header(&[0x09, 0], 1000), Err(WsError::BadControl));
        assert_eq!(read_all(&server_frame(true, OP_CONTINUATION, b"x"), 100), Err(WsError::BadFragmentation));
        let mut bytes = server_frame(false, OP_BINARY, b"x");
        bytes.extend(server_frame(true, OP_BINARY, b"y"));
        assert_eq!(read_all(&bytes, 100), Err(WsError::BadFragmentation));
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn upgrade_answers() {
        let accept = accept_for(UPGRADE_KEY);
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        let mut with_frame = ok.clone().into_bytes();
        with_frame.extend(server_frame(true, OP_BINARY, b"x"));
        assert_eq!(parse_upgrade_response(&with_frame, &accept), Ok(Some(ok.len())));
        assert_eq!(parse_upgrade_response(&ok.as_bytes()[..20], &accept), Ok(None));
        let wrong = ok.replace(&accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(parse_upgrade_response(wrong.as_bytes(), &accept), Err(UpgradeError::BadAccept));
        let limited = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse_upgrade_response(limited, &accept), Err(UpgradeError::Status(429)));
        assert_eq!(UpgradeError::Status(429).kind(), "http_429");
        assert_eq!(parse_upgrade_response(b"SSH-2.0-OpenSSH\r\n\r\n", &accept), Err(UpgradeError::Malformed));
        let request = String::from_utf8(upgrade_request("127.0.0.1:7700", "/ws", UPGRADE_KEY)).unwrap();
        assert!(request.starts_with("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:7700\r\n"), "{request}");
        assert!(request.ends_with("Sec-WebSocket-Version: 13\r\n\r\n"), "{request}");
    }
}
