//! Recovery from running out of descriptors: after a failure (a full disk
//! here), the store reopens its database, which opens files; while the
//! process has no descriptor left, every attempt fails with EMFILE, and once
//! descriptors are free again the store recovers by itself with nothing
//! acknowledged lost. Alone in its test binary: it exhausts the descriptors of
//! the whole process.
// Tests unwrap and index: a panic there is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::HashSet;
use std::fs::File;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use backend_store::*;
use common::*;

#[test]
fn a_store_out_of_descriptors_recovers_once_they_are_free() {
    let fs = Tmpfs::mount("16m");
    let store = Store::open(config(&fs.path().join("store"))).unwrap();
    connect(&store, 1, 1);
    connect(&store, 2, 1);
    let mut acked = HashSet::new();
    for client_id in 1..=100 {
        acked.insert(send(&store, 1, 1, client_id, direct(2), &[1; 1000]).message.id);
    }
    let filler = fill(fs.path());
    // Every descriptor of the process taken (the filler is already open).
    let mut taken = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        taken.push(file);
    }
    assert!(taken.len() > 10, "the process could open only {} files", taken.len());
    let refused = (101..10_000)
        .find_map(|client_id| try_send(&store, 1, 1, client_id, direct(2), &[1; 1000]).err())
        .expect("a send fails on a full disk");
    assert!(matches!(refused, StoreError::Recovering { .. }), "{refused:?}");

    // Space comes back, descriptors do not: reopening fails (EMFILE), the
    // store stays unwritable and keeps refusing retryably.
    std::fs::remove_file(&filler).unwrap();
    let failures = store.metrics().failures.load(Ordering::Relaxed);
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let result = try_send(&store, 1, 1, 20_000, direct(2), &[1; 1000]);
        assert!(matches!(result, Err(StoreError::Recovering { .. })), "{result:?}");
        assert!(!store.writable());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(store.metrics().reopens.load(Ordering::Relaxed), 0, "reopened without descriptors");
    assert_eq!(store.metrics().failures.load(Ordering::Relaxed), failures);

    drop(taken);
    let deadline = Instant::now() + Duration::from_secs(30);
    let sent = loop {
        match try_send(&store, 1, 1, 20_000, direct(2), &[1; 1000]) {
            Ok(sent) => break sent,
            Err(StoreError::Recovering { retry_after_ms }) => {
                assert!(Instant::now() < deadline, "no recovery 30 s after the descriptors were freed");
                std::thread::sleep(Duration::from_millis(u64::from(retry_after_ms).min(500)));
            }
            Err(other) => panic!("{other:?}"),
        }
    };
    acked.insert(sent.message.id);
    assert!(store.writable());
    let delivered: HashSet<_> = inbox_all(&store, 2, 1).into_iter().map(|d| d.message_id).collect();
    assert!(acked.is_subset(&delivered), "acknowledged messages lost");
}
