//! The HTTP/1.1 upgrade request that opens a WebSocket (RFC 6455 §4.2), server
//! side: [`parse_request`] decides from the bytes read so far whether to wait,
//! accept or reject, and [`write_accept`] / [`write_rejection`] write the answer
//! into the caller's buffer. No allocation: headers are parsed by `httparse` into
//! a fixed array on the stack.
//!
//! # Rules, in the order they are checked
//!
//! | Check | Failure |
//! |-------|---------|
//! | The head (request line and headers) ends within `max_request_len` bytes | 431 [`RejectReason::TooLarge`] |
//! | At most [`MAX_HEADERS`] headers | 431 [`RejectReason::TooManyHeaders`] |
//! | The head is valid HTTP/1.x | 400 [`RejectReason::Malformed`] |
//! | Method `GET` | 405 [`RejectReason::Method`] (with `Allow: GET`) |
//! | Version `HTTP/1.1` (HTTP/1.0 refused) | 400 [`RejectReason::HttpVersion`] |
//! | Path `/ws`, or `/echo` if [`HandshakeConfig::echo`]; a query string is ignored | 404 [`RejectReason::Path`] |
//! | A `Host` header (RFC 6455 §4.1, RFC 9112 §3.2) | 400 [`RejectReason::Host`] |
//! | No body: no `Transfer-Encoding`, no `Content-Length` other than 0 | 400 [`RejectReason::Body`] |
//! | `Upgrade` lists `websocket` and `Connection` lists `upgrade` (comma-separated tokens, any case) | 426 [`RejectReason::Upgrade`] (with `Upgrade: websocket`) |
//! | Exactly one `Sec-WebSocket-Version`, equal to `13` | 426 [`RejectReason::WsVersion`] (with `Sec-WebSocket-Version: 13`) |
//! | Exactly one `Sec-WebSocket-Key`, canonical base64 of 16 bytes | 400 [`RejectReason::Key`] |
//!
//! `Origin` is not checked (the clients are apps, not pages), and neither
//! subprotocols nor extensions are negotiated: an offer of `permessage-deflate`
//! (SPEC §1) or of a subprotocol is ignored, so the answer names neither.
//!
//! # Example
//!
//! ```
//! use gateway_ws::handshake::{parse_request, write_accept, HandshakeConfig, Route};
//!
//! let request = b"GET /ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
//!     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
//! let cfg = HandshakeConfig::default();
//! assert_eq!(parse_request(&request[..20], &cfg), Ok(None)); // wait for more bytes
//! let accepted = parse_request(request, &cfg).unwrap().unwrap();
//! assert_eq!((accepted.consumed, accepted.route), (request.len(), Route::Ws));
//! assert_eq!(accepted.accept_key(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
//! let mut out = Vec::new();
//! write_accept(&accepted, &mut out);
//! assert!(out.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
//! ```

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::BufMut;
use ring::digest;

/// Headers parsed at most; a request with more is refused with 431.
pub const MAX_HEADERS: usize = 32;

/// The GUID that RFC 6455 §1.3 appends to the key before hashing.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Length of `Sec-WebSocket-Accept`: base64 of a 20-byte SHA-1 digest.
const ACCEPT_LEN: usize = 28;

/// Upgrade settings. One value is shared by every connection of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeConfig {
    /// Accept `/echo` as well as `/ws` (a test and load-test route). Default: false.
    pub echo: bool,
    /// Most bytes the request head (request line and headers, with the blank
    /// line) may take; a longer or unfinished head past this is refused with 431.
    /// Default: 8192.
    pub max_request_len: usize,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        Self { echo: false, max_request_len: 8192 }
    }
}

/// Which endpoint the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `/ws`: the messenger protocol (SPEC §1).
    Ws,
    /// `/echo`: messages are echoed (only when [`HandshakeConfig::echo`] is set).
    Echo,
}

/// A valid upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Bytes of the request head. The caller drops them from its input; any bytes
    /// after them are already WebSocket frames.
    pub consumed: usize,
    /// The endpoint asked for.
    pub route: Route,
    /// `Sec-WebSocket-Accept`: base64(SHA-1(key + GUID)), always ASCII.
    accept: [u8; ACCEPT_LEN],
}

impl Accepted {
    /// The `Sec-WebSocket-Accept` value that [`write_accept`] sends.
    pub fn accept_key(&self) -> &str {
        // Base64 output is ASCII, so this never falls back.
        core::str::from_utf8(&self.accept).unwrap_or_default()
    }
}

/// A refused upgrade: the caller writes it with [`write_rejection`] and closes the
/// connection once it is flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status code of the answer (see [`RejectReason::status`]).
    pub status: u16,
    /// Why, for logs and metrics.
    pub reason: RejectReason,
}

impl From<RejectReason> for Rejection {
    fn from(reason: RejectReason) -> Self {
        Self { status: reason.status(), reason }
    }
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// Not parseable as an HTTP/1.x request head (400).
    Malformed,
    /// Method other than GET (405).
    Method,
    /// HTTP version other than 1.1 (400).
    HttpVersion,
    /// Unknown path (404).
    Path,
    /// No `Host` header (400).
    Host,
    /// The request announces a body (400): the bytes after the head must be frames.
    Body,
    /// `Upgrade: websocket` or `Connection: upgrade` missing (426).
    Upgrade,
    /// `Sec-WebSocket-Version` missing, repeated or not 13 (426).
    WsVersion,
    /// `Sec-WebSocket-Key` missing, repeated or not base64 of 16 bytes (400).
    Key,
    /// More than [`MAX_HEADERS`] headers (431).
    TooManyHeaders,
    /// The head is longer than [`HandshakeConfig::max_request_len`] (431).
    TooLarge,
}

impl RejectReason {
    /// A stable snake_case label, for metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Method => "method",
            Self::HttpVersion => "http_version",
            Self::Path => "path",
            Self::Host => "host",
            Self::Body => "body",
            Self::Upgrade => "upgrade",
            Self::WsVersion => "ws_version",
            Self::Key => "key",
            Self::TooManyHeaders => "too_many_headers",
            Self::TooLarge => "too_large",
        }
    }

    /// The HTTP status that [`parse_request`] answers this reason with.
    pub const fn status(self) -> u16 {
        match self {
            Self::Malformed | Self::HttpVersion | Self::Host | Self::Body | Self::Key => 400,
            Self::Path => 404,
            Self::Method => 405,
            Self::Upgrade | Self::WsVersion => 426,
            Self::TooManyHeaders | Self::TooLarge => 431,
        }
    }
}

/// Parses the upgrade request at the front of `buf` (everything read so far).
///
/// `Ok(None)`: the head is incomplete and under the limit; call again with more
/// bytes. `Ok(Some)`: a valid upgrade of `consumed` bytes. `Err`: refuse it (see
/// the [module docs](self) for the rules). Only the first `max_request_len` bytes
/// are looked at, so repeated calls on a growing buffer cost at most that much.
pub fn parse_request(buf: &[u8], cfg: &HandshakeConfig) -> Result<Option<Accepted>, Rejection> {
    let window = buf.get(..cfg.max_request_len).unwrap_or(buf);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if window.len() < cfg.max_request_len => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(RejectReason::TooLarge.into()),
        Err(httparse::Error::TooManyHeaders) => return Err(RejectReason::TooManyHeaders.into()),
        Err(_) => return Err(RejectReason::Malformed.into()),
    };
    check(&req, cfg)
        .map_err(Rejection::from)
        .map(|(route, key)| Some(Accepted { consumed, route, accept: accept_key(key) }))
}

/// Applies the rules to a complete head; returns the route and the raw key.
fn check<'b>(
    req: &httparse::Request<'_, 'b>,
    cfg: &HandshakeConfig,
) -> Result<(Route, &'b [u8]), RejectReason> {
    if req.method != Some("GET") {
        return Err(RejectReason::Method);
    }
    if req.version != Some(1) {
        return Err(RejectReason::HttpVersion);
    }
    let path = req.path.unwrap_or_default();
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    let route = match path {
        "/ws" => Route::Ws,
        "/echo" if cfg.echo => Route::Echo,
        _ => return Err(RejectReason::Path),
    };

    let mut host = false;
    let mut body = false;
    let mut upgrade = false;
    let mut connection = false;
    let mut version: Option<Option<&[u8]>> = None; // Some(None): repeated
    let mut key: Option<Option<&'b [u8]>> = None;
    for header in req.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("host") {
            host = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            body |= trim(value) != b"0";
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            body = true;
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(value, b"websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(value, b"upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version = Some(if version.is_some() { None } else { Some(trim(value)) });
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(if key.is_some() { None } else { Some(trim(value)) });
        }
    }
    if !host {
        return Err(RejectReason::Host);
    }
    if body {
        return Err(RejectReason::Body);
    }
    if !(upgrade && connection) {
        return Err(RejectReason::Upgrade);
    }
    if version != Some(Some(b"13")) {
        return Err(RejectReason::WsVersion);
    }
    match key {
        Some(Some(key)) if is_valid_key(key) => Ok((route, key)),
        _ => Err(RejectReason::Key),
    }
}

/// Whether `key` is canonical base64 of exactly 16 bytes (24 characters).
fn is_valid_key(key: &[u8]) -> bool {
    let mut decoded = [0u8; 18]; // 24 base64 characters decode to at most 18 bytes
    key.len() == 24 && STANDARD.decode_slice(key, &mut decoded) == Ok(16)
}

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + GUID)).
fn accept_key(key: &[u8]) -> [u8; ACCEPT_LEN] {
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(WS_GUID);
    let mut out = [0u8; ACCEPT_LEN];
    // 20 bytes always encode to exactly 28 characters, so this cannot fail.
    let _ = STANDARD.encode_slice(ctx.finish(), &mut out);
    out
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|t| trim(t).eq_ignore_ascii_case(token))
}

/// `value` without leading and trailing spaces and tabs (HTTP's OWS).
fn trim(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// Writes the `101 Switching Protocols` answer for `accepted`.
///
/// `out` must be able to take the ~130 bytes (a `BytesMut` or `Vec` grows; a
/// fixed slice that is too small panics, as `BufMut` does).
pub fn write_accept(accepted: &Accepted, out: &mut impl BufMut) {
    out.put_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    out.put_slice(b"Sec-WebSocket-Accept: ");
    out.put_slice(&accepted.accept);
    out.put_slice(b"\r\n\r\n");
}

/// Writes the error answer for `rejection`: its status line, `Connection: close`,
/// `Content-Length: 0`, and the headers the status calls for (`Allow: GET` for
/// 405, `Upgrade: websocket` for 426, `Sec-WebSocket-Version: 13` for a bad
/// version). The caller closes the connection once it is flushed.
///
/// `out` must be able to take the ~150 bytes (see [`write_accept`]).
pub fn write_rejection(rejection: &Rejection, out: &mut impl BufMut) {
    out.put_slice(b"HTTP/1.1 ");
    put_decimal(out, rejection.status);
    out.put_u8(b' ');
    out.put_slice(reason_phrase(rejection.status).as_bytes());
    out.put_slice(b"\r\nConnection: close\r\nContent-Length: 0\r\n");
    match rejection.status {
        405 => out.put_slice(b"Allow: GET\r\n"),
        426 => out.put_slice(b"Upgrade: websocket\r\n"),
        _ => {}
    }
    if rejection.reason == RejectReason::WsVersion {
        out.put_slice(b"Sec-WebSocket-Version: 13\r\n");
    }
    out.put_slice(b"\r\n");
}

/// Reason phrase of the status codes this module and its callers use.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// Writes `n` in decimal without allocating.
fn put_decimal(out: &mut impl BufMut, n: u16) {
    let mut digits = [0u8; 5];
    let mut start = digits.len();
    let mut rest = n;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
        start -= 1;
        if rest == 0 {
            break;
        }
    }
    // One step back per digit, and a u16 has at most five.
    debug_assert!(start < digits.len(), "{n} in {start}..");
    out.put_slice(digits.get(start..).unwrap_or_default());
}
