//! Prekeys, on the writer: upload (identity key and signed prekey replaced,
//! one-time keys added) and fetch, which consumes one one-time key per device
//! bundle, lowest id first.
//!
//! Keyspace `prekeys`: `I user device` → stock, identity key, signed prekey;
//! `O user device id` → one-time key. The stock count lives in the `I`
//! record so Connect and fetch never count keys.

use bytes::Bytes;
use protocol::limits::MAX_ONE_TIME_PREKEYS;
use protocol::{DeviceBundle, DeviceId, Key, OneTimePrekey, SignedPrekey, UserId};

use crate::api::{PrekeyFetch, PrekeyFetched, PrekeyUpload, StoreError};
use crate::codec::{corrupt, identity_key, one_time_key, prefix_end, prekey as prefix, Dec, Enc};
use crate::db::{Ks, Tx};

/// A device's stored identity record.
struct Identity {
    stock: u32,
    identity_key: Key,
    signed_prekey: SignedPrekey,
}

fn key(bytes: &[u8]) -> Result<Key, StoreError> {
    Key::new(Bytes::copy_from_slice(bytes)).map_err(|_| corrupt("prekey"))
}

fn decode(bytes: &[u8]) -> Result<Identity, StoreError> {
    let mut dec = Dec::new(bytes);
    let stock = dec.u32()?;
    let identity_key = key(dec.bytes()?)?;
    let id = dec.u32()?;
    let spk = key(dec.bytes()?)?;
    let signature = protocol::Signature::new(Bytes::copy_from_slice(dec.bytes()?))
        .map_err(|_| corrupt("prekey signature"))?;
    Ok(Identity { stock, identity_key, signed_prekey: SignedPrekey { id, key: spk, signature } })
}

fn encode(identity: &Identity) -> Vec<u8> {
    Enc::default()
        .u32(identity.stock)
        .bytes(identity.identity_key.bytes())
        .u32(identity.signed_prekey.id)
        .bytes(identity.signed_prekey.key.bytes())
        .bytes(identity.signed_prekey.signature.bytes())
        .done()
}

fn load(tx: &mut Tx<'_>, user: UserId, device: DeviceId) -> Result<Option<Identity>, StoreError> {
    tx.get(Ks::Prekeys, &identity_key(user, device))?.map(|b| decode(&b)).transpose()
}

/// One-time keys in stock, if the device uploaded keys.
pub(crate) fn stock(tx: &mut Tx<'_>, user: UserId, device: DeviceId) -> Result<Option<u32>, StoreError> {
    Ok(load(tx, user, device)?.map(|i| i.stock))
}

/// PREKEY_UPLOAD: returns the stock after it.
pub(crate) fn upload(tx: &mut Tx<'_>, req: PrekeyUpload) -> Result<u32, StoreError> {
    let mut stock = stock(tx, req.user, req.device)?.unwrap_or(0);
    // The decoder bounds the list; the store bounds it again on its own.
    for one in req.one_time.iter().take(MAX_ONE_TIME_PREKEYS) {
        let k = one_time_key(req.user, req.device, one.id);
        if tx.get(Ks::Prekeys, &k)?.is_none() {
            stock = stock.saturating_add(1);
        }
        tx.put(Ks::Prekeys, k, one.key.bytes().to_vec());
    }
    let identity = Identity { stock, identity_key: req.identity_key, signed_prekey: req.signed_prekey };
    tx.put(Ks::Prekeys, identity_key(req.user, req.device), encode(&identity));
    Ok(stock)
}

/// PREKEY_FETCH: one bundle per device with keys, each consuming a one-time key.
pub(crate) fn fetch(tx: &mut Tx<'_>, req: PrekeyFetch, low_mark: u32) -> Result<PrekeyFetched, StoreError> {
    let devices: Vec<DeviceId> = if req.device.0 == 0 {
        let start = Enc::tag(prefix::IDENTITY).user(req.user).done();
        let end = prefix_end(&start);
        let mut out = Vec::new();
        for (k, _) in tx.range(Ks::Prekeys, &start, &end, usize::MAX)? {
            let mut dec = Dec::new(&k);
            dec.skip(9)?;
            out.push(DeviceId(dec.u32()?));
        }
        out
    } else {
        vec![req.device]
    };
    let mut fetched = PrekeyFetched { bundles: Vec::new(), low: Vec::new() };
    for device in devices {
        let Some(mut identity) = load(tx, req.user, device)? else {
            continue;
        };
        let start = Enc::tag(prefix::ONE_TIME).user(req.user).device(device).done();
        let end = prefix_end(&start);
        let one_time = match tx.range(Ks::Prekeys, &start, &end, 1)?.into_iter().next() {
            Some((k, v)) => {
                tx.del(Ks::Prekeys, k.clone());
                identity.stock = identity.stock.saturating_sub(1);
                let mut dec = Dec::new(&k);
                dec.skip(13)?;
                Some(OneTimePrekey { id: dec.u32()?, key: key(&v)? })
            }
            None => None,
        };
        tx.put(Ks::Prekeys, identity_key(req.user, device), encode(&identity));
        if identity.stock <= low_mark {
            fetched.low.push((device, identity.stock));
        }
        fetched.bundles.push(DeviceBundle {
            device,
            identity_key: identity.identity_key,
            signed_prekey: identity.signed_prekey,
            one_time,
        });
    }
    if fetched.bundles.is_empty() {
        return Err(StoreError::UnknownDevice(req.user));
    }
    Ok(fetched)
}
