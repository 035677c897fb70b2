//! Decoder fuzz target: arbitrary bytes as a stream and as one WebSocket
//! message. Beyond "never panics", it checks the canonical-encoding property:
//! every frame that decodes re-encodes to exactly the bytes it came from.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use protocol::Decoder;

fuzz_target!(|data: &[u8]| {
    let decoder = Decoder::new();

    // As a stream: frames come off the front until the input runs out or fails.
    let mut stream = BytesMut::from(data);
    let mut consumed = 0;
    while let Ok(Some(frame)) = decoder.decode(&mut stream) {
        let encoded = frame.to_bytes().expect("a decoded frame is encodable");
        assert_eq!(&encoded[..], &data[consumed..consumed + encoded.len()]);
        assert_eq!(encoded.len(), frame.encoded_len());
        consumed += encoded.len();
    }

    // As one message: the same frames, then at most one error, then nothing.
    let mut errors = 0;
    for item in decoder.message(Bytes::copy_from_slice(data)) {
        if item.is_err() {
            errors += 1;
        }
    }
    assert!(errors <= 1);
});
