//! Session-core micro-benchmarks: what one live session costs per input
//! message and per live delivery, with baselines measured in the same run:
//!
//! - `ping_x64/session`: one masked WebSocket message of 64 PINGs through
//!   `handle_read` (unmask, decode, rate bucket, PONG queued) and the turn's
//!   `flush`; baseline `ping_x64/decode_only`: the protocol decoder alone on
//!   the same (unmasked) frames, the floor any session pays.
//! - `deliver_x64_<size>/shared`: 64 live DELIVERs queued through
//!   `deliver_live` with one shared encoding, sealed and written out; baseline
//!   `deliver_x64_<size>/encode_each`: the same 64 DELIVERs encoded one by one
//!   into the same session's queue (`Session::send`), sealed and written out:
//!   what a recipient costs without encode-once. Payloads of 256 B, 1 KiB and
//!   4 KiB (tails up to 1 KiB are copied, larger ones referenced).
//!
//! Run: `cargo bench -p gateway-core --bench session`.

// Bench setup on fixed, valid inputs: a failure here is a bug in the bench.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway_core::{Class, Config, Ctx, Limits, NoObserver, Session, SharedDeliver};
use gateway_ws::HandshakeConfig;
use protocol::{
    AuthOk, Capabilities, ConvSeq, Conversation, Decoder, Deliver, DeviceId, Frame, GroupId, Hello,
    MessageId, Payload, Ping, Seq, Timestamp, Token, UserId,
};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn config() -> Config {
    Config {
        handshake: HandshakeConfig::default(),
        handshake_timeout: Duration::from_secs(5),
        auth_timeout: Duration::from_secs(10),
        heartbeat: Duration::from_secs(30),
        heartbeat_misses: 3,
        max_message: protocol::limits::MAX_CLIENT_MESSAGE_LEN,
        outbound: Limits { pause_bytes: 1 << 20, max_bytes: 2 << 20 },
        outbound_preauth: 8 << 10,
        echo_max_message: 16 << 20,
        write_stall: Duration::from_secs(30),
        linger: Duration::from_secs(2),
        decoder: Decoder::new(),
        rate: None,
        sync_window: 256,
    }
}

/// A masked binary client message carrying `payload`.
fn client_message(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x82];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

fn frames_bytes(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode(&mut out).unwrap();
    }
    out.to_vec()
}

/// A session that upgraded, sent HELLO and was accepted (empty inbox).
fn live(config: &Config, now: Instant) -> Session {
    let mut actions = Vec::new();
    let mut observer = NoObserver;
    let mut ctx = Ctx { now, config, observer: &mut observer, actions: &mut actions };
    let mut session = Session::new(&mut ctx);
    let upgrade = "GET /ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    session.handle_read(&mut ctx, &mut BytesMut::from(upgrade.as_bytes()));
    let hello = Frame::Hello(Hello {
        min_version: 1,
        max_version: 1,
        device: DeviceId(1),
        resume_after: Seq(0),
        capabilities: Capabilities::ALL,
        token: Token::new(&b"token"[..]).unwrap(),
    });
    session.handle_read(&mut ctx, &mut BytesMut::from(&client_message(&frames_bytes(&[hello]))[..]));
    let auth_ok = AuthOk {
        version: 1,
        user: UserId(7),
        device: DeviceId(1),
        session: 1,
        server_time: Timestamp(0),
        heartbeat_ms: 30_000,
        inbox_head: Seq(0),
        max_payload: 65_536,
        capabilities: Capabilities::ALL,
    };
    session.accept(&mut ctx, auth_ok, Seq(0));
    drain(&mut session, &mut ctx);
    session
}

/// Seals the turn's output and reports it all written (as a socket would).
fn drain(session: &mut Session, ctx: &mut Ctx<'_, NoObserver>) {
    session.flush();
    let written: usize = session.outbound().chunks().map(<[u8]>::len).sum();
    session.handle_written(ctx, written);
    ctx.actions.clear();
}

fn deliver(seq: u64, size: usize) -> Deliver {
    Deliver {
        seq: Seq(seq),
        message_id: MessageId(1_000_000 + seq),
        conversation: Conversation::Group(GroupId(42)),
        conv_seq: ConvSeq(seq),
        sender: UserId(9),
        sender_device: DeviceId(1),
        server_time: Timestamp(1_700_000_000_000),
        payload: Payload::new(vec![7u8; size]).unwrap(),
    }
}

fn ping_x64(c: &mut Criterion) {
    let config = config();
    let now = Instant::now();
    let pings: Vec<Frame> = (0..64).map(|nonce| Frame::Ping(Ping { nonce })).collect();
    let plain = frames_bytes(&pings);
    let message = client_message(&plain);
    let mut group = c.benchmark_group("ping_x64");
    group.throughput(Throughput::Elements(64));
    let mut session = live(&config, now);
    let (mut actions, mut observer) = (Vec::new(), NoObserver);
    group.bench_function("session", |b| {
        b.iter(|| {
            let mut ctx = Ctx { now, config: &config, observer: &mut observer, actions: &mut actions };
            let mut input = BytesMut::from(&message[..]);
            session.handle_read(&mut ctx, &mut input);
            drain(&mut session, &mut ctx);
        });
    });
    let decoder = Decoder::new();
    group.bench_function("decode_only", |b| {
        b.iter(|| {
            let count = decoder.message(bytes::Bytes::copy_from_slice(&plain)).filter(Result::is_ok).count();
            black_box(count)
        });
    });
    group.finish();
}

fn deliver_x64(c: &mut Criterion) {
    let config = config();
    let now = Instant::now();
    for (name, size) in [("deliver_x64_256B", 256), ("deliver_x64_1KiB", 1024), ("deliver_x64_4KiB", 4096)] {
        let shared = SharedDeliver::new(&deliver(0, size));
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(64));
        let (mut actions, mut observer) = (Vec::new(), NoObserver);
        let mut session = live(&config, now);
        let mut seq = 0u64;
        group.bench_function("shared", |b| {
            b.iter(|| {
                let mut ctx = Ctx { now, config: &config, observer: &mut observer, actions: &mut actions };
                for _ in 0..64 {
                    seq += 1;
                    session.deliver_live(&mut ctx, Seq(seq), &shared);
                }
                drain(&mut session, &mut ctx);
            });
        });
        let frames: Vec<Frame> = (1..=64).map(|seq| Frame::Deliver(deliver(seq, size))).collect();
        let mut session = live(&config, now);
        group.bench_function("encode_each", |b| {
            b.iter(|| {
                let mut ctx = Ctx { now, config: &config, observer: &mut observer, actions: &mut actions };
                for frame in &frames {
                    let _ = black_box(session.send(&mut ctx, frame, Class::Live));
                }
                drain(&mut session, &mut ctx);
            });
        });
        group.finish();
    }
}

criterion_group!(benches, ping_x64, deliver_x64);
criterion_main!(benches);
