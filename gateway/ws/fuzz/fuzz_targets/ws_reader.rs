//! Upgrade and frame-reader fuzz target. The first input byte picks the
//! settings (echo route, request limit, message limit, read size); the rest is
//! what a client sends: an upgrade request, then frames.
//!
//! Beyond "never panics", it checks that:
//! - an answer (101 or error) is a complete HTTP response with the right status;
//! - the reader's outcome (events, then error or not) is the same whether the
//!   bytes come in one read or in small ones;
//! - every event keeps its promises: UTF-8 text, control payloads within 125
//!   bytes, valid close codes, messages within the limit.
#![no_main]

use bytes::BytesMut;
use gateway_ws::frame::is_valid_close_code;
use gateway_ws::{
    parse_request, write_accept, write_rejection, HandshakeConfig, MessageReader, WsError, WsEvent,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&settings, input)) = data.split_first() else { return };
    let cfg =
        HandshakeConfig { echo: settings & 1 != 0, max_request_len: 64 + usize::from(settings >> 1) * 32 };
    let max_message = usize::from(settings) * 4;
    let read_size = 1 + usize::from(settings % 13);

    let frames = match parse_request(input, &cfg) {
        Ok(Some(accepted)) => {
            assert!(accepted.consumed <= input.len().min(cfg.max_request_len));
            let mut out = Vec::new();
            write_accept(&accepted, &mut out);
            assert_eq!(response_status(&out), 101);
            &input[accepted.consumed..]
        }
        Ok(None) => {
            assert!(input.len() < cfg.max_request_len);
            input
        }
        Err(rejection) => {
            let mut out = Vec::new();
            write_rejection(&rejection, &mut out);
            assert_eq!(response_status(&out), rejection.status);
            assert!((400..500).contains(&rejection.status));
            input
        }
    };

    let whole = read(frames, max_message, frames.len().max(1));
    let chunked = read(frames, max_message, read_size);
    assert_eq!(whole, chunked);
    for event in &whole.0 {
        match event {
            WsEvent::Text(text) => {
                assert!(std::str::from_utf8(text).is_ok());
                assert!(text.len() <= max_message);
            }
            WsEvent::Binary(data) => assert!(data.len() <= max_message),
            WsEvent::Ping(p) | WsEvent::Pong(p) => assert!(p.len() <= 125),
            WsEvent::Close { code, reason } => {
                assert!(code.is_none_or(is_valid_close_code));
                assert!(code.is_some() || reason.is_empty());
                assert!(std::str::from_utf8(reason).is_ok() && reason.len() <= 123);
            }
        }
    }
    if let Err(e) = whole.1 {
        assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
    }
});

/// Feeds `stream` to a reader `step` bytes at a time, stopping at the first error.
fn read(stream: &[u8], max_message: usize, step: usize) -> (Vec<WsEvent>, Result<(), WsError>) {
    let mut reader = MessageReader::new(max_message);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for chunk in stream.chunks(step) {
        buf.extend_from_slice(chunk);
        if let Err(e) = reader.read(&mut buf, |event| events.push(event)) {
            return (events, Err(e));
        }
    }
    (events, Ok(()))
}

/// The status of a complete HTTP response (panics if it is not one).
fn response_status(bytes: &[u8]) -> u16 {
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut response = httparse::Response::new(&mut headers);
    assert_eq!(response.parse(bytes), Ok(httparse::Status::Complete(bytes.len())));
    response.code.expect("a complete response has a status")
}
