//! Device registration (Connect) and the per-device state record: inbox head,
//! acked cursor, last connect time.
//!
//! Registrations are never dropped (a device unused for `retention` keeps its
//! slot until an operator removes it); the device limit counts them all.

use protocol::{DeviceId, UserId};

use crate::api::{Connect, Connected, StoreError};
use crate::codec::{device_key, devices_key, Dec, DeviceState, Enc};
use crate::db::{Ks, Tx};
use crate::prekeys;

/// The user's registered devices, in registration order.
pub(crate) fn list(tx: &mut Tx<'_>, user: UserId) -> Result<Vec<DeviceId>, StoreError> {
    let Some(bytes) = tx.get(Ks::Meta, &devices_key(user))? else {
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
    match tx.get(Ks::Meta, &device_key(user, device))? {
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
    let mut devices = list(tx, req.user)?;
    if !devices.contains(&req.device) {
        if devices.len() >= max_devices as usize {
            return Err(StoreError::TooManyDevices(req.user));
        }
        devices.push(req.device);
        let value = devices.iter().fold(Enc::default(), |enc, d| enc.device(*d)).done();
        tx.put(Ks::Meta, devices_key(req.user), value);
    }
    let mut st = state(tx, req.user, req.device)?;
    let previous = st.connected;
    st.connected = tx.now;
    set_state(tx, req.user, req.device, st);
    Ok(Connected {
        inbox_head: protocol::Seq(st.head),
        acked: protocol::Seq(st.acked),
        prekey_stock: prekeys::stock(tx, req.user, req.device)?,
        previous_connect: protocol::Timestamp(previous),
    })
}
