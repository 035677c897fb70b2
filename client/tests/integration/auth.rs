//! Connect, HELLO and AUTH_OK / AUTH_ERROR, deadlines, URLs.

use std::time::Duration;

use client::{Client, ClientError, Event};
use protocol::{AuthError, Capabilities, DeviceId, ErrorCode, Frame, Note, Seq};

use crate::support::{config, within, Peer, USER};

#[tokio::test]
async fn auth_ok_makes_a_live_client() {
    let mut peer = Peer::bind().await;
    let mut config = config(peer.url());
    config.resume_after = Seq(7);
    config.capabilities = Capabilities::RECEIPTS;
    // Spawned: the client's futures must be Send.
    let connecting = tokio::spawn(Client::connect(config));
    let mut conn = peer.accept().await;
    let hello = conn.accept_hello(60_000).await;
    let mut client = within(connecting).await.unwrap().unwrap();

    assert_eq!((hello.min_version, hello.max_version), (1, 1));
    assert_eq!(hello.device, DeviceId(3));
    assert_eq!(hello.resume_after, Seq(7));
    assert_eq!(hello.capabilities, Capabilities::RECEIPTS);
    assert_eq!(hello.token.bytes().as_ref(), b"test-token");
    assert!(client.is_connected());
    assert_eq!(client.user(), Some(USER));
    assert_eq!(client.heartbeat_interval(), Some(Duration::from_secs(60)));
    let first = within(client.next_event()).await.unwrap();
    assert!(matches!(first, Event::Authenticated(ok) if ok.user == USER && ok.device == DeviceId(3)));
}

#[tokio::test]
async fn auth_error_is_rejected_with_its_code() {
    let mut peer = Peer::bind().await;
    let (result, ()) = within(async {
        tokio::join!(Client::connect(config(peer.url())), async {
            let mut conn = peer.accept().await;
            conn.hello().await;
            conn.send([Frame::AuthError(AuthError {
                code: ErrorCode::AUTH_INVALID,
                retry_after_ms: 0,
                text: Note::truncated("bad signature"),
            })])
            .await;
            conn.close(protocol::CloseCode::AUTH_FAILED, "auth failed").await;
        })
    })
    .await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, ClientError::AuthRejected { code: ErrorCode::AUTH_INVALID, text, .. } if text == "bad signature"),
        "{err:?}"
    );
    assert!(!err.is_resumable());
}

#[tokio::test]
async fn silent_server_times_out_auth() {
    let mut peer = Peer::bind().await;
    let mut config = config(peer.url());
    config.auth_timeout = Duration::from_millis(200);
    let (result, _conn) = within(async {
        tokio::join!(Client::connect(config), async {
            let mut conn = peer.accept().await;
            conn.hello().await;
            conn // kept open, never answered
        })
    })
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err, ClientError::Timeout("auth")), "{err:?}");
    assert!(err.is_resumable());
}

#[tokio::test]
async fn upgrade_on_another_path_is_refused() {
    let peer = Peer::bind().await;
    let url = format!("ws://{}/elsewhere", peer.addr());
    let err = within(Client::connect(config(url))).await.unwrap_err();
    assert!(matches!(err, ClientError::WebSocket(_)), "{err:?}");
    assert!(!err.is_resumable(), "a 404 upgrade is not worth retrying");
}

#[tokio::test]
async fn bad_urls_are_refused_before_connecting() {
    for url in ["http://127.0.0.1:1/ws", "ws:///ws", "not a url", "127.0.0.1:7700"] {
        let err = within(Client::connect(config(url.to_owned()))).await.unwrap_err();
        assert!(matches!(err, ClientError::InvalidUrl(_)), "{url}: {err:?}");
    }
}

#[tokio::test]
async fn oversized_token_is_refused() {
    let mut config = config("ws://127.0.0.1:1/ws".to_owned());
    config.token = vec![0u8; protocol::limits::MAX_TOKEN + 1].into();
    let err = within(Client::connect(config)).await.unwrap_err();
    assert!(matches!(err, ClientError::Encode(_)), "{err:?}");
}

#[tokio::test]
async fn expired_token_needs_a_new_one_and_then_reconnects() {
    let mut peer = Peer::bind().await;
    let (mut client, mut conn) = crate::support::connected(&mut peer, 60_000).await;
    // The server ends the live session because the token expired (SPEC §4.3).
    conn.close(protocol::CloseCode::AUTH_EXPIRED, "token expired").await;
    let err = loop {
        match within(client.next_event()).await {
            Ok(_) => continue,
            Err(err) => break err,
        }
    };
    assert!(err.needs_new_token(), "{err:?}");
    assert!(!err.is_resumable(), "the old token would fail the same way");

    client.set_token(bytes::Bytes::from_static(b"fresh-token")).unwrap();
    let (reconnected, hello) = tokio::join!(client.reconnect(), async {
        let mut conn = peer.accept().await;
        conn.accept_hello(60_000).await
    });
    within(async { reconnected }).await.unwrap();
    assert_eq!(hello.token.bytes().as_ref(), b"fresh-token");
}
