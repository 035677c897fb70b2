//! Helpers shared by the integration tests: synchronous calls into a real
//! store in a temporary directory.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use backend_store::*;
use bytes::Bytes;
use protocol::{Conversation, DeviceId, Seq, UserId};

/// The store's configuration for a test: defaults, with the writers
/// `STORE_TEST_WRITERS` says (`scripts/test` runs these tests with 1 and
/// with 4: every test of one database holds with several).
pub fn config(dir: &std::path::Path) -> StoreConfig {
    let mut config = StoreConfig::new(dir);
    if let Some(writers) = std::env::var("STORE_TEST_WRITERS").ok().and_then(|w| w.parse().ok()) {
        config.writers = writers;
    }
    config
}

pub fn call(store: &Store, request: Request) -> Result<Response, StoreError> {
    let (tx, rx) = mpsc::channel();
    store.call(request, Box::new(move |r| tx.send(r).unwrap()));
    rx.recv_timeout(Duration::from_secs(30)).expect("store answered")
}

pub fn connect(store: &Store, user: u64, device: u32) -> Connected {
    match call(store, Request::Connect(Connect { user: UserId(user), device: DeviceId(device) })) {
        Ok(Response::Connected(c)) => c,
        other => panic!("connect: {other:?}"),
    }
}

pub fn try_send(
    store: &Store,
    user: u64,
    device: u32,
    client_id: u64,
    to: Conversation,
    body: &[u8],
) -> Result<Sent, StoreError> {
    let req = SendMessage {
        user: UserId(user),
        device: DeviceId(device),
        client_id,
        to,
        payload: Bytes::copy_from_slice(body),
    };
    match call(store, Request::Send(req))? {
        Response::Sent(s) => Ok(s),
        other => panic!("send: {other:?}"),
    }
}

pub fn send(store: &Store, user: u64, device: u32, client_id: u64, to: Conversation, body: &[u8]) -> Sent {
    try_send(store, user, device, client_id, to, body).unwrap()
}

pub fn change(store: &Store, user: u64, op: GroupOp) -> Result<GroupChanged, StoreError> {
    match call(store, Request::Group(GroupChange { user: UserId(user), device: DeviceId(1), op }))? {
        Response::GroupChanged(c) => Ok(c),
        other => panic!("{other:?}"),
    }
}

/// A group `user` creates with `members`, named "team".
pub fn create(store: &Store, user: u64, members: &[u64]) -> GroupChanged {
    let op = GroupOp::Create {
        name: protocol::GroupName::new("team").unwrap(),
        members: members.iter().map(|&m| UserId(m)).collect(),
    };
    change(store, user, op).unwrap()
}

pub fn direct(user: u64) -> Conversation {
    Conversation::Direct(UserId(user))
}

pub fn inbox(store: &Store, user: u64, device: u32, after: u64, limit: u32, max_bytes: u32) -> InboxPage {
    let q = InboxQuery { user: UserId(user), device: DeviceId(device), after: Seq(after), limit, max_bytes };
    match call(store, Request::Inbox(q)) {
        Ok(Response::Inbox(page)) => page,
        other => panic!("inbox: {other:?}"),
    }
}

/// Every entry of an inbox, in pages of 512.
pub fn inbox_all(store: &Store, user: u64, device: u32) -> Vec<protocol::Deliver> {
    let mut out: Vec<protocol::Deliver> = Vec::new();
    loop {
        let after = out.last().map_or(0, |d| d.seq.0);
        let page = inbox(store, user, device, after, 512, u32::MAX);
        if page.entries.is_empty() {
            return out;
        }
        out.extend(page.entries);
    }
}

pub fn ack(store: &Store, user: u64, device: u32, up_to: u64) -> Vec<ReceiptNote> {
    match call(store, Request::Ack(Ack { user: UserId(user), device: DeviceId(device), up_to: Seq(up_to) })) {
        Ok(Response::Receipts(r)) => r,
        other => panic!("ack: {other:?}"),
    }
}

pub fn read(
    store: &Store,
    user: u64,
    device: u32,
    conversation: Conversation,
    up_to: u64,
) -> Result<Vec<ReceiptNote>, StoreError> {
    let req = ReadCursor {
        user: UserId(user),
        device: DeviceId(device),
        conversation,
        up_to: protocol::ConvSeq(up_to),
    };
    match call(store, Request::Read(req))? {
        Response::Receipts(r) => Ok(r),
        other => panic!("read: {other:?}"),
    }
}

/// A tmpfs mounted for the test; unmounted (lazily) when dropped, even when
/// the test fails.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(status.success(), "this test mounts a tmpfs and needs root (mount exited {status})");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Writes zeros into `path` until the file system is full.
pub fn fill(path: &Path) -> PathBuf {
    let filler = path.join("filler");
    std::fs::File::create(&filler).unwrap();
    fill_more(&filler);
    filler
}

/// Appends to `filler` until the file system is full again.
pub fn fill_more(filler: &Path) {
    let mut file = std::fs::OpenOptions::new().append(true).open(filler).unwrap();
    let block = vec![0u8; 64 * 1024];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling: {e}"),
        }
    }
    // Smaller writes take the last partial block too.
    while file.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
}
