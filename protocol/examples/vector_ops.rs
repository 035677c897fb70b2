//! Codec operations per second on the golden vectors (`testdata/vectors.json`,
//! the frame vectors' `hex`), the Rust side of `scripts/bench-ts-codec`; the
//! TypeScript side is `clients/ts/bench/codec.mjs`, which runs the same loops:
//!
//! - decode: one op is one vector message decoded as a server message into a
//!   `Vec<Frame>`, cycling over every frame vector;
//! - encode: one op is one vector's frames encoded into one reused buffer.
//!
//! Each phase warms up for 0.5 s, then counts whole cycles over the vectors for
//! 2 s of wall time, on this one thread. Every vector is checked to round-trip
//! (encode(decode(hex)) == hex) before timing. Prints one JSON line to stdout
//! and a human line to stderr.
//!
//! Run: `cargo run --release -p protocol --example vector_ops`.

use std::error::Error;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use protocol::{DecodeError, Decoder, Frame};
use serde_json::{json, Value};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors.json");
const WARM_UP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(2);

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> Result<()> {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(VECTORS)?)?;
    let messages = json
        .get("frames")
        .and_then(Value::as_array)
        .ok_or("vectors.json has no `frames` array")?
        .iter()
        .map(|vector| {
            let hex = vector.get("hex").and_then(Value::as_str).ok_or("a frame vector has no `hex`")?;
            Ok(Bytes::from(from_hex(hex)?))
        })
        .collect::<Result<Vec<Bytes>>>()?;
    let decoder = Decoder::for_server_messages();
    let frames = messages
        .iter()
        .map(|message| decode(decoder, message.clone()))
        .collect::<std::result::Result<Vec<Vec<Frame>>, DecodeError>>()?;

    let mut buf = BytesMut::new();
    for (message, decoded) in messages.iter().zip(&frames) {
        encode(&mut buf, decoded)?;
        if buf[..] != message[..] {
            return Err(format!("round trip: {message:x} encodes back to {buf:x}").into());
        }
    }

    let decode_ops = ops_per_sec(messages.len(), || {
        for message in &messages {
            black_box(decode(decoder, black_box(message.clone()))?);
        }
        Ok(())
    })?;
    let encode_ops = ops_per_sec(frames.len(), || {
        for decoded in &frames {
            encode(&mut buf, black_box(decoded))?;
            black_box(&buf);
        }
        Ok(())
    })?;

    let vectors = messages.len();
    let frames_per_cycle = frames.iter().map(Vec::len).sum::<usize>();
    let bytes_per_cycle = messages.iter().map(Bytes::len).sum::<usize>();
    let frames_per_sec = |ops: f64| ops / vectors as f64 * frames_per_cycle as f64;
    let mb_per_sec = |ops: f64| ops / vectors as f64 * bytes_per_cycle as f64 / 1e6;
    eprintln!(
        "rust: decode {:.2} M ops/s ({:.2} M frames/s, {:.1} MB/s), encode {:.2} M ops/s ({:.2} M frames/s, {:.1} MB/s)",
        decode_ops / 1e6,
        frames_per_sec(decode_ops) / 1e6,
        mb_per_sec(decode_ops),
        encode_ops / 1e6,
        frames_per_sec(encode_ops) / 1e6,
        mb_per_sec(encode_ops),
    );
    println!(
        "{}",
        json!({
            "impl": "rust",
            "decode_ops": decode_ops.round() as u64,
            "encode_ops": encode_ops.round() as u64,
            "decode_frames": frames_per_sec(decode_ops).round() as u64,
            "encode_frames": frames_per_sec(encode_ops).round() as u64,
            "decode_mb": (mb_per_sec(decode_ops) * 10.0).round() / 10.0,
            "encode_mb": (mb_per_sec(encode_ops) * 10.0).round() / 10.0,
            "vectors": vectors,
            "frames_per_cycle": frames_per_cycle,
            "bytes_per_cycle": bytes_per_cycle,
            "seconds": MEASURE.as_secs_f64(),
        })
    );
    Ok(())
}

/// The frames of one message, as a client reads a server's.
fn decode(decoder: Decoder, message: Bytes) -> std::result::Result<Vec<Frame>, DecodeError> {
    decoder.message(message).collect()
}

/// One message holding `frames`, in `buf` (cleared first, its capacity kept).
fn encode(buf: &mut BytesMut, frames: &[Frame]) -> Result<()> {
    buf.clear();
    for frame in frames {
        frame.encode(buf)?;
    }
    Ok(())
}

/// Runs `cycle` (one op per vector) for `WARM_UP`, then for `MEASURE`, and
/// returns the ops per second of the measured whole cycles.
fn ops_per_sec(ops_per_cycle: usize, mut cycle: impl FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    while start.elapsed() < WARM_UP {
        cycle()?;
    }
    let start = Instant::now();
    let mut cycles = 0u64;
    while start.elapsed() < MEASURE {
        cycle()?;
        cycles += 1;
    }
    Ok((cycles * ops_per_cycle as u64) as f64 / start.elapsed().as_secs_f64())
}

/// Lower-case hex, as vectors.json writes it (the crate's own decoder is
/// behind its `json` feature).
fn from_hex(hex: &str) -> Result<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return Err(format!("odd-length hex: {hex}").into());
    }
    hex.as_bytes().chunks(2).map(|pair| Ok(u8::from_str_radix(std::str::from_utf8(pair)?, 16)?)).collect()
}
