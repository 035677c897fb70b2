//! Recovery from a full disk: the store's directory is a small tmpfs (mounted
//! by the test; it needs root), filled up by a filler file while messages are
//! sent. The store must answer `Recovering` with a real `retry_after_ms`, say
//! it is not writable, recover by itself once the filler is deleted, and have
//! lost no acknowledged message (checked live and after a reopen).
// Tests unwrap and index: a panic there is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use backend_store::*;
use common::*;

#[test]
fn a_full_disk_makes_the_store_recover_by_itself_with_nothing_acked_lost() {
    let fs = Tmpfs::mount("16m");
    let dir = fs.path().join("store");
    let store = Store::open(config(&dir)).unwrap();
    connect(&store, 1, 1);
    connect(&store, 2, 1);
    let body = vec![7u8; 1000];
    let mut acked = HashSet::new();
    let mut client_id = 0;
    let mut send = |store: &Store| {
        client_id += 1;
        let result = try_send(store, 1, 1, client_id, direct(2), &body);
        if let Ok(sent) = &result {
            acked.insert(sent.message.id);
        }
        result
    };
    for _ in 0..200 {
        send(&store).unwrap();
    }

    let filler = fill(fs.path());
    // The journal buffer may take a few sends before a write reaches the disk.
    let refused = (0..10_000).find_map(|_| send(&store).err()).expect("a send fails on a full disk");
    let StoreError::Recovering { retry_after_ms } = refused else {
        panic!("expected Recovering, got {refused:?}");
    };
    assert!(retry_after_ms > 0);
    assert_eq!(refused.code(), protocol::ErrorCode::BACKEND_UNAVAILABLE);
    assert!(store.metrics().failures.load(Ordering::Relaxed) >= 1);
    // While the disk stays full (a reopening may free a little: the journal's
    // torn tail is cut; the filler takes it back), it keeps refusing
    // retryably, never anything else, and says it is not writable.
    let until = Instant::now() + Duration::from_secs(3);
    let (mut refusals, mut unwritable) = (0, 0);
    while Instant::now() < until {
        fill_more(&filler);
        if !store.writable() && store.metrics().closed.load(Ordering::Relaxed) > 0 {
            unwritable += 1;
        }
        match send(&store) {
            Ok(_) => {}
            Err(StoreError::Recovering { .. }) => refusals += 1,
            Err(other) => panic!("expected Recovering while full, got {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(refusals > 0 && unwritable > 0, "{refusals} refusals, {unwritable} times unwritable while full");

    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match send(&store) {
            Ok(_) => break,
            Err(StoreError::Recovering { retry_after_ms }) => {
                assert!(Instant::now() < deadline, "the store did not recover within 30 s of freeing space");
                std::thread::sleep(Duration::from_millis(u64::from(retry_after_ms).min(500)));
            }
            Err(other) => panic!("expected Recovering or success, got {other:?}"),
        }
    }
    assert!(store.writable());
    assert!(store.metrics().reopens.load(Ordering::Relaxed) >= 1);
    for _ in 0..50 {
        send(&store).unwrap();
    }

    let delivered =
        |store: &Store| -> HashSet<_> { inbox_all(store, 2, 1).into_iter().map(|d| d.message_id).collect() };
    let live = delivered(&store);
    let lost: Vec<_> = acked.difference(&live).collect();
    assert!(lost.is_empty(), "{} acknowledged messages lost: {lost:?}", lost.len());
    drop(store);
    let store = Store::open(config(&dir)).unwrap();
    let reopened = delivered(&store);
    assert!(acked.is_subset(&reopened), "acknowledged messages lost across a reopen");
}

#[test]
fn the_store_directory_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("a").join("store");
    drop(Store::open(config(&store_dir)).unwrap());
    for path in [dir.path().join("a"), store_dir.clone()] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}: mode {mode:o}", path.display());
    }
    // An existing directory is made private too.
    std::fs::set_permissions(&store_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    drop(Store::open(config(&store_dir)).unwrap());
    let mode = std::fs::metadata(&store_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn the_store_opens_on_a_full_disk_and_serves_reads() {
    let fs = Tmpfs::mount("8m");
    let dir = fs.path().join("store");
    let store = Store::open(config(&dir)).unwrap();
    connect(&store, 1, 1);
    connect(&store, 2, 1);
    let sent = send(&store, 1, 1, 1, direct(2), b"before the disk filled up");
    drop(store);
    fill(fs.path());
    let store = Store::open(config(&dir)).expect("opening needs no free space when nothing is written");
    let entries = inbox_all(&store, 2, 1);
    assert_eq!(entries.iter().map(|d| d.message_id).collect::<Vec<_>>(), vec![sent.message.id]);
}
