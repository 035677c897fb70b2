//! Prekey upload and fetch against a real fjall store.
// Tests unwrap and index: a panic there is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use backend_store::*;
use common::*;
use protocol::{DeviceId, Key, OneTimePrekey, Signature, SignedPrekey, UserId};

fn upload(store: &Store, user: u64, device: u32, ids: &[u32]) -> u32 {
    let key = |b: u8| Key::new(vec![b; 32]).unwrap();
    let req = PrekeyUpload {
        user: UserId(user),
        device: DeviceId(device),
        identity_key: key(device as u8),
        signed_prekey: SignedPrekey { id: 7, key: key(9), signature: Signature::new(vec![1; 64]).unwrap() },
        one_time: ids.iter().map(|&id| OneTimePrekey { id, key: key(id as u8) }).collect(),
    };
    match call(store, Request::PrekeyUpload(req)).unwrap() {
        Response::PrekeyStock(n) => n,
        other => panic!("{other:?}"),
    }
}

fn fetch(store: &Store, user: u64, device: u32) -> Result<PrekeyFetched, StoreError> {
    match call(store, Request::PrekeyFetch(PrekeyFetch { user: UserId(user), device: DeviceId(device) }))? {
        Response::PrekeyFetched(f) => Ok(f),
        other => panic!("{other:?}"),
    }
}

#[test]
fn consumption_order_stock_and_low() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.prekey_low = 1;
    let store = Store::open(cfg).unwrap();
    connect(&store, 1, 1);
    connect(&store, 1, 2);
    assert_eq!(fetch(&store, 1, 0).unwrap_err(), StoreError::UnknownDevice(UserId(1)));
    assert_eq!(upload(&store, 1, 1, &[30, 10, 20]), 3);
    assert_eq!(upload(&store, 1, 1, &[10]), 3, "a stored id is replaced, not added");
    assert_eq!(upload(&store, 1, 2, &[]), 0);
    assert_eq!(connect(&store, 1, 1).prekey_stock, Some(3));

    let f = fetch(&store, 1, 0).unwrap();
    assert_eq!(f.bundles.iter().map(|b| b.device.0).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(f.bundles[0].one_time.as_ref().unwrap().id, 10, "lowest id first");
    assert!(f.bundles[1].one_time.is_none(), "empty stock");
    assert_eq!(f.low, vec![(DeviceId(2), 0)]);
    let f = fetch(&store, 1, 1).unwrap();
    assert_eq!(f.bundles.len(), 1);
    assert_eq!(f.bundles[0].one_time.as_ref().unwrap().id, 20);
    assert_eq!(f.low, vec![(DeviceId(1), 1)]);
    assert_eq!(fetch(&store, 1, 1).unwrap().bundles[0].one_time.as_ref().unwrap().id, 30);
    assert!(fetch(&store, 1, 1).unwrap().bundles[0].one_time.is_none());
    assert_eq!(connect(&store, 1, 1).prekey_stock, Some(0));
    assert_eq!(fetch(&store, 1, 3).unwrap_err(), StoreError::UnknownDevice(UserId(1)));
    assert_eq!(fetch(&store, 2, 0).unwrap_err(), StoreError::UnknownDevice(UserId(2)));
}
