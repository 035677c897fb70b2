//! Codec micro-benchmarks: ns per frame and frames per second for the frames on
//! the hot path, with two baselines measured in the same run:
//!
//! - `memcpy`: copying the encoded bytes, the floor any codec pays;
//! - `serde_json`: the same DELIVER as the JSON object the seed designs put on
//!   the wire (serde derive, payload as a base64-sized ASCII string; base64 work
//!   itself is not counted, which flatters the baseline).
//!
//! Run: `cargo bench -p protocol --bench codec`.

// Bench setup on fixed, valid inputs: a failure here is a bug in the bench.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use protocol::{
    ConvSeq, Conversation, Decoder, Deliver, DeviceId, Frame, GroupId, List, MessageId, Payload, Ping, Seq,
    SyncBatch, Timestamp, UserId,
};

const PAYLOAD_LEN: usize = 256;

fn deliver(seq: u64) -> Deliver {
    Deliver {
        seq: Seq(seq),
        message_id: MessageId(1_000_000_000 + seq),
        conversation: Conversation::Group(GroupId(424_242)),
        conv_seq: ConvSeq(seq),
        sender: UserId(123_456_789),
        sender_device: DeviceId(2),
        server_time: Timestamp(1_767_225_600_000 + seq),
        payload: Payload::new(vec![0xa5; PAYLOAD_LEN]).unwrap(),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct JsonDeliver {
    r#type: String,
    seq: u64,
    message_id: u64,
    conversation_id: u64,
    conv_seq: u64,
    sender_id: u64,
    sender_device: u32,
    server_timestamp: u64,
    content_encrypted: String,
}

fn json_deliver(d: &Deliver) -> JsonDeliver {
    JsonDeliver {
        r#type: "message".into(),
        seq: d.seq.0,
        message_id: d.message_id.0,
        conversation_id: 424_242,
        conv_seq: d.conv_seq.0,
        sender_id: d.sender.0,
        sender_device: d.sender_device.0,
        server_timestamp: d.server_time.0,
        content_encrypted: "A".repeat(PAYLOAD_LEN.div_ceil(3) * 4),
    }
}

fn single_frame(c: &mut Criterion) {
    let frame = Frame::from(deliver(1));
    let encoded = frame.to_bytes().unwrap();
    let json = serde_json::to_vec(&json_deliver(&deliver(1))).unwrap();

    let mut group = c.benchmark_group("deliver_256B");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            black_box(&frame).encode(&mut out).unwrap();
            black_box(out.len());
        })
    });
    group.bench_function("decode", |b| {
        b.iter_batched(
            || BytesMut::from(&encoded[..]),
            |mut input| black_box(Decoder::new().decode(&mut input).unwrap()),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("baseline_memcpy", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            out.clear();
            out.extend_from_slice(black_box(&encoded));
            black_box(out.len());
        })
    });
    let value = json_deliver(&deliver(1));
    group.bench_function("baseline_serde_json_encode", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            out.clear();
            serde_json::to_writer(&mut out, black_box(&value)).unwrap();
            black_box(out.len());
        })
    });
    group.bench_function("baseline_serde_json_decode", |b| {
        b.iter(|| black_box(serde_json::from_slice::<JsonDeliver>(black_box(&json)).unwrap()))
    });
    group.finish();

    let ping = Frame::from(Ping { nonce: 42 });
    let ping_bytes = ping.to_bytes().unwrap();
    let mut group = c.benchmark_group("ping");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| {
        let mut out = BytesMut::with_capacity(64);
        b.iter(|| {
            out.clear();
            black_box(&ping).encode(&mut out).unwrap();
        })
    });
    group.bench_function("decode", |b| {
        b.iter_batched(
            || BytesMut::from(&ping_bytes[..]),
            |mut input| black_box(Decoder::new().decode(&mut input).unwrap()),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn batched_message(c: &mut Criterion) {
    // 64 deliveries in one WebSocket message, as a busy session's loop turn sends.
    const FRAMES: u64 = 64;
    let mut buf = BytesMut::new();
    for seq in 0..FRAMES {
        Frame::from(deliver(seq)).encode(&mut buf).unwrap();
    }
    let message: Bytes = buf.freeze();
    let decoder = Decoder::for_server_messages();

    let mut group = c.benchmark_group("message_64x_deliver");
    group.throughput(Throughput::Elements(FRAMES));
    group.bench_function("decode", |b| {
        b.iter(|| {
            for frame in decoder.message(black_box(message.clone())) {
                black_box(frame.unwrap());
            }
        })
    });
    group.finish();

    // A full sync window: decode once, then walk the entries.
    let entries: Vec<Deliver> = (0..512).map(deliver).collect();
    let batch = Frame::from(SyncBatch { remaining: 0, entries: List::from_items(&entries).unwrap() });
    let bytes = batch.to_bytes().unwrap();
    let mut group = c.benchmark_group("sync_batch_512");
    group.throughput(Throughput::Elements(512));
    group.bench_function("decode_and_iterate", |b| {
        b.iter(|| {
            let Some(Ok(Frame::SyncBatch(batch))) = decoder.message(black_box(bytes.clone())).next() else {
                unreachable!()
            };
            for entry in batch.entries.iter() {
                black_box(entry);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, single_frame, batched_message);
criterion_main!(benches);
