//! The upgrade: every rule of `handshake.rs`, and the answers' exact bytes.

use crate::handshake::{
    parse_request, write_accept, write_rejection, Accepted, HandshakeConfig, RejectReason, Rejection, Route,
    MAX_HEADERS,
};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A valid upgrade request with `extra` header lines (each ending in CRLF).
fn request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: gw.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A request built from a request line and complete header lines.
fn raw(line: &str, headers: &[String]) -> String {
    let mut s = format!("{line}\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s
}

const HOST: &str = "Host: gw";
const UPGRADE: &str = "Upgrade: websocket";
const CONNECTION: &str = "Connection: Upgrade";
const VERSION: &str = "Sec-WebSocket-Version: 13";
const KEY_LINE: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";

fn parse(req: &str) -> Result<Option<Accepted>, Rejection> {
    parse_request(req.as_bytes(), &HandshakeConfig::default())
}

fn accepted(req: &str) -> Accepted {
    parse(req).unwrap().unwrap()
}

fn rejected(req: &str) -> Rejection {
    parse(req).unwrap_err()
}

/// The headers of a valid request minus those starting with `without` (all
/// kept if it is empty), plus `with`.
fn headers_with(without: &str, with: &[&str]) -> Vec<String> {
    [HOST, UPGRADE, CONNECTION, VERSION, KEY_LINE]
        .into_iter()
        .filter(|h| without.is_empty() || !h.starts_with(without))
        .chain(with.iter().copied())
        .map(str::to_owned)
        .collect()
}

fn answer(rejection: &Rejection) -> String {
    let mut out = Vec::new();
    write_rejection(rejection, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn rfc_6455_sample_key() {
    let req = request("/ws", "");
    let a = accepted(&req);
    assert_eq!(a.consumed, req.len());
    assert_eq!(a.route, Route::Ws);
    assert_eq!(a.accept_key(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    let mut out = Vec::new();
    write_accept(&a, &mut out);
    assert_eq!(
        out,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
}

#[test]
fn every_prefix_is_incomplete() {
    let req = request("/ws", "");
    for end in 0..req.len() {
        assert_eq!(parse(&req[..end]), Ok(None), "prefix of {end} bytes");
    }
}

#[test]
fn bytes_after_the_head_are_not_consumed() {
    let req = request("/ws", "");
    let mut with_frame = req.clone().into_bytes();
    with_frame.extend_from_slice(&[0x82, 0x80, 1, 2, 3, 4]);
    let a = parse_request(&with_frame, &HandshakeConfig::default()).unwrap().unwrap();
    assert_eq!(a.consumed, req.len());
}

#[test]
fn method_must_be_get() {
    for method in ["POST", "HEAD", "PUT", "get"] {
        let req = request("/ws", "").replacen("GET", method, 1);
        let r = rejected(&req);
        assert_eq!((r.status, r.reason), (405, RejectReason::Method), "{method}");
        assert!(answer(&r).contains("\r\nAllow: GET\r\n"));
    }
}

#[test]
fn http_version_must_be_1_1() {
    let r = rejected(&request("/ws", "").replacen("HTTP/1.1", "HTTP/1.0", 1));
    assert_eq!((r.status, r.reason), (400, RejectReason::HttpVersion));
    // Not HTTP/1.x at all: httparse refuses the request line.
    let r = rejected(&request("/ws", "").replacen("HTTP/1.1", "HTTP/2.0", 1));
    assert_eq!((r.status, r.reason), (400, RejectReason::Malformed));
}

#[test]
fn path_is_exactly_ws_with_any_query() {
    for path in ["/ws", "/ws?", "/ws?token=abc&x=/echo"] {
        assert_eq!(accepted(&request(path, "")).route, Route::Ws, "{path}");
    }
    for path in ["/", "/ws/", "/wss", "/WS", "/ws#x", "//ws", "http://gw/ws", "*", "/echo", "/echo?x"] {
        let r = rejected(&request(path, ""));
        assert_eq!((r.status, r.reason), (404, RejectReason::Path), "{path}");
    }
}

#[test]
fn echo_only_when_enabled() {
    let cfg = HandshakeConfig { echo: true, ..HandshakeConfig::default() };
    let req = request("/echo?n=1", "");
    assert_eq!(parse_request(req.as_bytes(), &cfg).unwrap().unwrap().route, Route::Echo);
    assert_eq!(parse_request(request("/ws", "").as_bytes(), &cfg).unwrap().unwrap().route, Route::Ws);
    assert_eq!(rejected(&req).reason, RejectReason::Path);
}

#[test]
fn host_is_required() {
    let r = rejected(&raw("GET /ws HTTP/1.1", &headers_with("Host", &[])));
    assert_eq!((r.status, r.reason), (400, RejectReason::Host));
}

#[test]
fn upgrade_and_connection_tokens() {
    for (upgrade, connection) in [
        ("Upgrade: WebSocket", "Connection: upgrade"),
        ("Upgrade: websocket", "Connection: keep-alive, Upgrade"),
        ("Upgrade: websocket", "Connection: keep-alive,UPGRADE ,close"),
        ("Upgrade: h2c, websocket", "Connection:\tUpgrade\t"),
    ] {
        let h = headers_with("Upgrade", &[upgrade]);
        let h: Vec<_> =
            h.into_iter().filter(|h| !h.starts_with("Connection")).chain([connection.to_owned()]).collect();
        accepted(&raw("GET /ws HTTP/1.1", &h));
    }
    // Two Connection headers: the token may be in either.
    let h = headers_with("Connection", &["Connection: keep-alive", "Connection: upgrade"]);
    accepted(&raw("GET /ws HTTP/1.1", &h));

    for h in [
        headers_with("Upgrade", &[]),
        headers_with("Upgrade", &["Upgrade: websocket2"]),
        headers_with("Upgrade", &["Upgrade: web socket"]),
        headers_with("Connection", &[]),
        headers_with("Connection", &["Connection: keep-alive"]),
        headers_with("Connection", &["Connection: upgrades"]),
    ] {
        let r = rejected(&raw("GET /ws HTTP/1.1", &h));
        assert_eq!((r.status, r.reason), (426, RejectReason::Upgrade), "{h:?}");
        let text = answer(&r);
        assert!(text.contains("\r\nUpgrade: websocket\r\n"), "{text}");
        assert!(!text.contains("Sec-WebSocket-Version"), "{text}");
    }
}

#[test]
fn version_must_be_13() {
    for h in [
        headers_with("Sec-WebSocket-Version", &[]),
        headers_with("Sec-WebSocket-Version", &["Sec-WebSocket-Version: 8"]),
        headers_with("Sec-WebSocket-Version", &["Sec-WebSocket-Version: 13, 8"]),
        headers_with("Sec-WebSocket-Version", &["Sec-WebSocket-Version: 013"]),
        headers_with("", &["Sec-WebSocket-Version: 13"]), // repeated
    ] {
        let r = rejected(&raw("GET /ws HTTP/1.1", &h));
        assert_eq!((r.status, r.reason), (426, RejectReason::WsVersion), "{h:?}");
        let text = answer(&r);
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{text}");
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
    }
    accepted(&raw(
        "GET /ws HTTP/1.1",
        &headers_with("Sec-WebSocket-Version", &["sec-websocket-version:  13 "]),
    ));
}

#[test]
fn key_must_be_base64_of_16_bytes() {
    for key in [
        "",
        "dGhlIHNhbXBsZSBub25jZQ",     // no padding
        "dGhlIHNhbXBsZSBub25jZR==",   // non-zero trailing bits (not canonical)
        "dGhlIHNhbXBsZSBub25jZQ=",    // short padding
        "dGhlIHNhbXBsZSBub25j",       // 15 bytes
        "dGhlIHNhbXBsZSBub25jZTEy",   // 18 bytes
        "dGhlIHNhbXBsZSBub25jZTE=",   // 17 bytes
        "dGhlIHNhbXBsZSBub25jZQ==AA", // trailing data
        "dGhl IHNhbXBsZSBub25jZQ==",  // inner space
        "dGhlIHNhbXBsZSBub25jZQ-_",   // URL-safe alphabet
    ] {
        let line = format!("Sec-WebSocket-Key: {key}");
        let r = rejected(&raw("GET /ws HTTP/1.1", &headers_with("Sec-WebSocket-Key", &[&line])));
        assert_eq!((r.status, r.reason), (400, RejectReason::Key), "{key:?}");
    }
    let r = rejected(&raw("GET /ws HTTP/1.1", &headers_with("Sec-WebSocket-Key", &[])));
    assert_eq!(r.reason, RejectReason::Key);
    let r = rejected(&raw("GET /ws HTTP/1.1", &headers_with("", &[KEY_LINE])));
    assert_eq!(r.reason, RejectReason::Key, "repeated key");

    // Whitespace around the value is not part of it.
    let line = format!("sec-websocket-key: \t{KEY}  ");
    let a = accepted(&raw("GET /ws HTTP/1.1", &headers_with("Sec-WebSocket-Key", &[&line])));
    assert_eq!(a.accept_key(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    // Another key gets another answer (RFC 6455 §1.3 computation, any key).
    let other = request("/ws", "").replace(KEY, "AAAAAAAAAAAAAAAAAAAAAA==");
    assert_eq!(accepted(&other).accept_key(), "ICX+Yqv66kxgM0FcWaLWlFLwTAI=");
}

#[test]
fn no_body_allowed() {
    accepted(&request("/ws", "Content-Length: 0\r\n"));
    for extra in [
        "Content-Length: 5\r\n",
        "Transfer-Encoding: chunked\r\n",
        "Content-Length: 0\r\nContent-Length: 1\r\n",
    ] {
        let r = rejected(&request("/ws", extra));
        assert_eq!((r.status, r.reason), (400, RejectReason::Body), "{extra}");
    }
}

#[test]
fn extensions_and_subprotocols_are_ignored() {
    let req = request(
        "/ws",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\nSec-WebSocket-Protocol: chat\r\nOrigin: https://x\r\n",
    );
    let mut out = Vec::new();
    write_accept(&accepted(&req), &mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("Extensions") && !text.contains("Protocol:"), "{text}");
}

#[test]
fn header_count_limit() {
    let fill = |n: usize| (0..n).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect::<String>();
    // 5 headers of request() plus fillers.
    accepted(&request("/ws", &fill(MAX_HEADERS - 5)));
    let r = rejected(&request("/ws", &fill(MAX_HEADERS - 4)));
    assert_eq!((r.status, r.reason), (431, RejectReason::TooManyHeaders));
    // Too many headers is known before the head ends.
    let partial = request("/ws", &fill(MAX_HEADERS));
    let r = rejected(&partial[..partial.len() - 2]);
    assert_eq!(r.reason, RejectReason::TooManyHeaders);
}

#[test]
fn request_length_limit() {
    let req = request("/ws", "");
    let exact = HandshakeConfig { max_request_len: req.len(), ..HandshakeConfig::default() };
    assert!(parse_request(req.as_bytes(), &exact).unwrap().is_some());
    // A partial head just under the limit waits; at the limit it is refused.
    assert_eq!(parse_request(&req.as_bytes()[..req.len() - 1], &exact), Ok(None));
    let short = HandshakeConfig { max_request_len: req.len() - 1, ..HandshakeConfig::default() };
    let r = parse_request(req.as_bytes(), &short).unwrap_err();
    assert_eq!((r.status, r.reason), (431, RejectReason::TooLarge));
    // An endless header line is refused once the limit is reached.
    let mut endless = b"GET /ws HTTP/1.1\r\nX-Long: ".to_vec();
    endless.resize(8192, b'a');
    assert_eq!(parse_request(&endless[..8191], &HandshakeConfig::default()), Ok(None));
    let r = parse_request(&endless, &HandshakeConfig::default()).unwrap_err();
    assert_eq!(r.reason, RejectReason::TooLarge);
    // Empty input with a zero limit cannot wait for anything.
    let zero = HandshakeConfig { max_request_len: 0, ..HandshakeConfig::default() };
    assert_eq!(parse_request(b"", &zero).unwrap_err().reason, RejectReason::TooLarge);
}

#[test]
fn malformed_heads() {
    for req in
        ["\u{0}\u{1}garbage\r\n\r\n", "GET /ws HTTP/1.1\r\nNo colon here\r\n\r\n", "GET  HTTP/1.1\r\n\r\n"]
    {
        assert_eq!(rejected(req).reason, RejectReason::Malformed, "{req:?}");
    }
}

#[test]
fn rejection_answers() {
    use RejectReason::*;
    let all =
        [Malformed, Method, HttpVersion, Path, Host, Body, Upgrade, WsVersion, Key, TooManyHeaders, TooLarge];
    let mut labels = std::collections::HashSet::new();
    for reason in all {
        assert!(labels.insert(reason.as_str()), "duplicate label {}", reason.as_str());
        assert!(reason.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        let r = Rejection::from(reason);
        let text = answer(&r);
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut resp = httparse::Response::new(&mut headers);
        assert_eq!(resp.parse(text.as_bytes()).unwrap(), httparse::Status::Complete(text.len()), "{text}");
        assert_eq!(resp.code, Some(reason.status()));
        assert!(text.contains("\r\nConnection: close\r\nContent-Length: 0\r\n"), "{text}");
    }
    assert_eq!(
        answer(&Rejection::from(Path)),
        "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    // A status chosen by the caller (shedding load before the upgrade).
    let busy = Rejection { status: 503, reason: Malformed };
    assert!(answer(&busy).starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
    let odd = Rejection { status: 7, reason: Malformed };
    assert!(answer(&odd).starts_with("HTTP/1.1 7 Error\r\n"));
}
