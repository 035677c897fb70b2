//! Device registration (Connect) and the per-device state record: inbox head,
//! acked cursor, last connect time.
//!
//! Registrations are never dropped (a device unused for `retention` keeps its
//! slot until an operator removes it); the device limit counts them all.
//!
//! A Connect reads and writes past the writer's cache (it only refreshes
//! entries already there): most devices connect and idle, and each would
//! otherwise keep two entries there (about 250 bytes). The first message to
//! or from the device reads them into the cache.

use protocol::{DeviceId, UserId};

use crate::api::{Connect, Connected, StoreError};
use crate::codec::{device_key, devices_key, Dec, DeviceState, Enc};
use crate::db::{Ks, Tx};
use crate::prekeys;

/// The user's registered devices, in registration order (from the user's
/// shard: a Send checks that its peer has one).
pub(crate) fn list(tx: &mut Tx<'_>, user: UserId) -> Result<Vec<DeviceId>, StoreError> {
    let shard = tx.layout().user(user);
    decode_list(tx.get_in(shard, Ks::Meta, &devices_key(user))?)
}

fn decode_list(value: Option<Vec<u8>>) -> Result<Vec<DeviceId>, StoreError> {
    let Some(bytes) = value else {
        return Ok(Vec::new());
    };
    let mut dec = Dec::new(&bytes);
    let mut out = Vec::new();
    while !dec.is_empty() {
        out.push(DeviceId(dec.u32()?));
    }
    Ok(out)
}

/// A device's state (default if it has none yet).
pub(crate) fn state(tx: &mut Tx<'_>, user: UserId, device: DeviceId) -> Result<DeviceState, StoreError> {
    decode_state(tx.get(Ks::Meta, &device_key(user, device))?)
}

fn decode_state(value: Option<Vec<u8>>) -> Result<DeviceState, StoreError> {
    match value {
        Some(bytes) => DeviceState::decode(&bytes),
        None => Ok(DeviceState::default()),
    }
}

/// Stores a device's state.
pub(crate) fn set_state(tx: &mut Tx<'_>, user: UserId, device: DeviceId, state: DeviceState) {
    tx.put(Ks::Meta, device_key(user, device), state.encode());
}

/// Registers the device if new and records the connect time.
pub(crate) fn connect(tx: &mut Tx<'_>, req: Connect, max_devices: u32) -> Result<Connected, StoreError> {
    let mut devices = decode_list(tx.get_uncached(Ks::Meta, &devices_key(req.user))?)?;
    if !devices.contains(&req.device) {
        if devices.len() >= max_devices as usize {
            return Err(StoreError::TooManyDevices(req.user));
        }
        devices.push(req.device);
        let value = devices.iter().fold(Enc::default(), |enc, d| enc.device(*d)).done();
        tx.put_uncached(Ks::Meta, devices_key(req.user), value);
    }
    let key = device_key(req.user, req.device);
    let mut st = decode_state(tx.get_uncached(Ks::Meta, &key)?)?;
    let previous = st.connected;
    st.connected = tx.now;
    tx.put_uncached(Ks::Meta, key, st.encode());
    Ok(Connected {
        inbox_head: protocol::Seq(st.head),
        acked: protocol::Seq(st.acked),
        prekey_stock: prekeys::stock(tx, req.user, req.device)?,
        previous_connect: protocol::Timestamp(previous),
    })
}

#[cfg(test)]
mod tests {
    use fjall::PersistMode;

    use super::*;
    use crate::cache::MetaCache;
    use crate::db::Db;

    fn connect_at(db: &Db, cache: &mut MetaCache, now: u64, user: UserId, device: DeviceId) -> Connected {
        let mut tx = Tx::new(db, cache, now);
        let connected = connect(&mut tx, Connect { user, device }, 8).unwrap();
        tx.commit(PersistMode::Buffer).unwrap();
        connected
    }

    /// A device that connects and idles leaves nothing in the writer's cache;
    /// once something read its records into the cache, a Connect refreshes
    /// them there (a stale entry would answer the next Send wrongly).
    #[test]
    fn a_connect_only_refreshes_cache_entries_already_held() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let mut cache = MetaCache::new();
        let (user, device) = (UserId(7), DeviceId(1));
        connect_at(&db, &mut cache, 1_000, user, device);
        connect_at(&db, &mut cache, 2_000, user, DeviceId(2));
        assert_eq!(cache.len(), 0, "connects fill no cache entry");

        // A message to the user reads both records into the cache.
        let mut tx = Tx::new(&db, &mut cache, 3_000);
        assert_eq!(list(&mut tx, user).unwrap(), [device, DeviceId(2)]);
        assert_eq!(state(&mut tx, user, device).unwrap().connected, 1_000);
        tx.commit(PersistMode::Buffer).unwrap();
        assert_eq!(cache.len(), 2);

        let again = connect_at(&db, &mut cache, 4_000, user, device);
        assert_eq!(again.previous_connect.0, 1_000);
        connect_at(&db, &mut cache, 5_000, user, DeviceId(3));
        assert_eq!(cache.len(), 2, "the refreshed entries, no new one");
        let tx = Tx::new(&db, &mut cache, 6_000);
        let cached = tx.known(Ks::Meta, &device_key(user, device)).flatten().map(<[u8]>::to_vec);
        assert_eq!(cached, db.get(Ks::Meta, &device_key(user, device)).unwrap());
        assert_eq!(DeviceState::decode(&cached.unwrap()).unwrap().connected, 4_000);
        let listed = tx.known(Ks::Meta, &devices_key(user)).flatten().map(<[u8]>::to_vec);
        assert_eq!(decode_list(listed).unwrap(), [device, DeviceId(2), DeviceId(3)]);
    }
}
