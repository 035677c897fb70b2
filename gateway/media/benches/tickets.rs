//! What a media ticket costs the worker that issues it: an upload ticket
//! (budget check, random id, media id MAC, SigV4 presigning of a PUT with a
//! signed header) and a download ticket (media id check, presigning of a
//! GET). `scripts/bench-media` runs these beside a PING round trip through a
//! node.

#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway_media::{Media, MediaSettings};
use protocol::{MediaClass, MediaDownload, MediaUpload};

fn media() -> Media {
    let settings = MediaSettings {
        endpoint: "https://s3.eu-west-1.amazonaws.com".parse().expect("a URL"),
        path_style: true,
        bucket: "media".into(),
        region: "eu-west-1".into(),
        access_key: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        id_key: vec![7; 32],
        key_prefix: "media/".into(),
        ticket_lifetime: Duration::from_secs(900),
        max_blob_bytes: 100 << 20,
        quota_bytes_per_day: u64::MAX,
        tickets_per_min: u32::MAX,
        retention: Duration::from_secs(30 * 86_400),
    };
    Media::new(&settings).expect("valid settings")
}

fn tickets(c: &mut Criterion) {
    let media = media();
    let now_ms = 1_767_225_600_000;
    let upload = MediaUpload { request: 1, client_blob: 1, size: 300_000, class: MediaClass::Image };
    let ticket = media.upload(1_001, &upload, now_ms).expect("a ticket");
    let download = MediaDownload { request: 2, media_id: ticket.media_id };
    let mut group = c.benchmark_group("media");
    group.throughput(Throughput::Elements(1));
    // Users spread over the budget shards, as many users would be.
    let mut user = 0u64;
    group.bench_function("upload_ticket", |b| {
        b.iter(|| {
            user = user.wrapping_add(1) % 100_000;
            black_box(media.upload(user, black_box(&upload), now_ms))
        })
    });
    group.bench_function("download_ticket", |b| {
        b.iter(|| {
            user = user.wrapping_add(1) % 100_000;
            black_box(media.download(user, black_box(&download), now_ms))
        })
    });
    group.finish();
}

criterion_group!(benches, tickets);
criterion_main!(benches);
