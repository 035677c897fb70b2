//! The link decoder on arbitrary bytes: it never panics, never reads past
//! its input, and every frame it accepts encodes back to bytes that decode to
//! the same frame.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use routing::link::LinkFrame;

fuzz_target!(|data: &[u8]| {
    let mut input = BytesMut::from(data);
    while let Ok(Some(frame)) = LinkFrame::decode(&mut input) {
        let mut again = BytesMut::new();
        frame.encode(&mut again);
        let back = LinkFrame::decode(&mut again).expect("re-encoded frame decodes").expect("whole");
        assert_eq!(back, frame);
        assert!(again.is_empty());
    }
});
