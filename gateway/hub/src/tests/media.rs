//! Media tickets in the hub: the MEDIA capability granted only with an object
//! store, tickets answered in the turn that asks (no store call), and a
//! user's budgets shared by its devices on every worker.

use std::sync::Arc;
use std::time::Duration;

use gateway_media::{Media, MediaSettings};
use protocol::{
    Capabilities, ErrorCode, Frame, HttpMethod, MediaClass, MediaDownload, MediaUpload, MediaUploadTicket,
};

use super::harness::{hub_config, Client, TestNode};

const DAY_MS: u64 = 86_400_000;

fn media(tickets_per_min: u32, quota_bytes_per_day: u64) -> Arc<Media> {
    let settings = MediaSettings {
        endpoint: "http://127.0.0.1:9000".parse().unwrap(),
        path_style: true,
        bucket: "media".into(),
        region: "us-east-1".into(),
        access_key: "key".into(),
        secret_key: "secret".into(),
        id_key: vec![9; 32],
        key_prefix: "media/".into(),
        ticket_lifetime: Duration::from_secs(900),
        max_blob_bytes: 1 << 20,
        quota_bytes_per_day,
        tickets_per_min,
        retention: Duration::from_secs(30 * 86_400),
    };
    Arc::new(Media::new(&settings).unwrap())
}

fn node_with(workers: usize, media: Arc<Media>) -> TestNode {
    let mut config = hub_config();
    config.media = Some(media);
    TestNode::with_config(workers, config)
}

fn upload(request: u64, size: u64) -> Frame {
    Frame::MediaUpload(MediaUpload { request, client_blob: request + 100, size, class: MediaClass::Video })
}

/// A node with media, one session on it, and the ticket of its upload
/// `request` of `size` bytes (the only frame it got).
fn one_upload(request: u64, size: u64) -> (TestNode, Client, MediaUploadTicket) {
    let mut node = node_with(1, media(60, u64::MAX));
    let client = node.connect(0, 1, 1, 0);
    node.output(client);
    node.send(client, &[upload(request, size)]);
    let frames = node.frames(client);
    let [Frame::MediaUploadTicket(ticket)] = frames.as_slice() else { panic!("{frames:?}") };
    (node, client, ticket.clone())
}

fn granted(node: &mut TestNode, client: Client) -> Capabilities {
    node.frames(client)
        .iter()
        .find_map(|frame| match frame {
            Frame::AuthOk(ok) => Some(ok.capabilities),
            _ => None,
        })
        .unwrap()
}

/// The answers in `client`'s output: ticket requests, and refusals as
/// (reference, code, retry_after_ms).
fn answers(node: &mut TestNode, client: Client) -> (Vec<u64>, Vec<(u64, ErrorCode, u32)>) {
    let (mut tickets, mut refusals) = (Vec::new(), Vec::new());
    for frame in node.frames(client) {
        match frame {
            Frame::MediaUploadTicket(ticket) => tickets.push(ticket.request),
            Frame::MediaDownloadTicket(ticket) => tickets.push(ticket.request),
            Frame::Error(error) => refusals.push((error.reference, error.code, error.retry_after_ms)),
            _ => {}
        }
    }
    (tickets, refusals)
}

#[test]
fn media_is_granted_only_by_a_node_with_an_object_store() {
    let mut node = TestNode::new(1);
    let client = node.connect(0, 1, 1, 0);
    let without = granted(&mut node, client);
    assert!(
        !without.contains(Capabilities::MEDIA) && without.contains(Capabilities::RECEIPTS),
        "{without:?}"
    );
    let mut node = node_with(1, media(60, u64::MAX));
    let client = node.connect(0, 1, 1, 0);
    assert_eq!(granted(&mut node, client), Capabilities::ALL);
}

#[test]
fn a_ticket_is_answered_in_the_turn_with_its_ids_and_a_signed_put() {
    let (mut node, client, ticket) = one_upload(7, 300);
    assert_eq!((ticket.request, ticket.client_blob, ticket.method), (7, 107, HttpMethod::Put));
    assert!(
        ticket.url.as_str().starts_with("http://127.0.0.1:9000/media/media/video/"),
        "{}",
        ticket.url.as_str()
    );
    assert!(
        ticket.url.as_str().contains("X-Amz-SignedHeaders=content-length%3Bhost"),
        "{}",
        ticket.url.as_str()
    );
    assert_eq!(ticket.expires_at.0, node.now.unix_ms / 1_000 * 1_000 + 900_000);
    let download = MediaDownload { request: 8, media_id: ticket.media_id.clone() };
    node.send(client, &[Frame::MediaDownload(download)]);
    let frames = node.frames(client);
    let [Frame::MediaDownloadTicket(fetch)] = frames.as_slice() else { panic!("{frames:?}") };
    assert_eq!((fetch.request, fetch.size), (8, 300));
    let object = ticket.url.as_str().split('?').next().unwrap();
    assert_eq!(
        fetch.url.as_str().split('?').next().unwrap(),
        object,
        "the download names the uploaded object"
    );
}

#[test]
fn a_users_ticket_rate_is_shared_by_its_devices_on_every_worker() {
    let mut node = node_with(2, media(3, u64::MAX));
    let phone = node.connect(0, 1, 1, 0);
    let laptop = node.connect(1, 1, 2, 0);
    let other = node.connect(1, 2, 1, 0);
    for client in [phone, laptop, other] {
        node.output(client);
    }
    node.send(phone, &[upload(1, 10), upload(2, 10)]);
    node.send(laptop, &[upload(3, 10), upload(4, 10)]);
    node.send(other, &[upload(5, 10)]);
    assert_eq!(answers(&mut node, phone), (vec![1, 2], vec![]));
    // Three a minute for the user: the fourth waits a third of a minute.
    assert_eq!(answers(&mut node, laptop), (vec![3], vec![(4, ErrorCode::RATE_LIMITED, 20_000)]));
    assert_eq!(answers(&mut node, other), (vec![5], vec![]), "another user has its own budget");
    node.advance(Duration::from_secs(20));
    node.send(laptop, &[upload(6, 10)]);
    assert_eq!(answers(&mut node, laptop), (vec![6], vec![]));
}

#[test]
fn a_spent_quota_is_refused_until_the_utc_day_ends() {
    let mut node = node_with(1, media(60, 1_000));
    let client = node.connect(0, 1, 1, 0);
    node.output(client);
    node.send(client, &[upload(1, 600), upload(2, 600), upload(3, 400)]);
    let until_midnight = DAY_MS - node.now.unix_ms % DAY_MS;
    let expected = vec![(2, ErrorCode::MEDIA_QUOTA_EXCEEDED, u32::try_from(until_midnight).unwrap())];
    assert_eq!(answers(&mut node, client), (vec![1, 3], expected));
    node.send(client, &[upload(4, 1_048_577)]);
    assert_eq!(answers(&mut node, client), (vec![], vec![(4, ErrorCode::MEDIA_TOO_LARGE, 0)]));
    node.advance(Duration::from_millis(until_midnight));
    node.send(client, &[upload(5, 1_000)]);
    assert_eq!(answers(&mut node, client), (vec![5], vec![]), "a new day, a new quota");
}

#[test]
fn a_media_id_past_retention_is_unknown() {
    let (mut node, client, ticket) = one_upload(1, 10);
    let download =
        |request| Frame::MediaDownload(MediaDownload { request, media_id: ticket.media_id.clone() });
    node.advance(Duration::from_secs(30 * 86_400));
    node.send(client, &[download(2)]);
    assert_eq!(answers(&mut node, client), (vec![2], vec![]), "30 days: still served");
    node.advance(Duration::from_secs(2));
    node.send(client, &[download(3)]);
    assert_eq!(answers(&mut node, client), (vec![], vec![(3, ErrorCode::UNKNOWN_MEDIA, 0)]));
}

#[test]
fn while_the_store_check_fails_tickets_are_refused_as_retryable() {
    let media = media(60, u64::MAX);
    let mut node = node_with(1, Arc::clone(&media));
    let client = node.connect(0, 1, 1, 0);
    node.output(client);
    media.set_store_up(Some("connection refused"), Duration::from_millis(5_000));
    node.send(client, &[upload(1, 10)]);
    let refusal = node.frames(client).into_iter().find_map(|frame| match frame {
        Frame::Error(error) => Some(error),
        _ => None,
    });
    let refusal = refusal.unwrap();
    assert_eq!(
        (refusal.reference, refusal.code, refusal.retryable),
        (1, ErrorCode::BACKEND_UNAVAILABLE, true)
    );
    assert_eq!(refusal.retry_after_ms, 5_000, "until the next check");
    media.set_store_up(None, Duration::from_millis(5_000));
    node.send(client, &[upload(2, 10)]);
    assert_eq!(answers(&mut node, client), (vec![2], vec![]), "granted again, the budget untouched");
}
