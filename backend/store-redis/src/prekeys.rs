//! Prekeys: upload (identity key and signed prekey replaced, one-time keys
//! added) and fetch (one bundle per device, each consuming its lowest
//! one-time key), one script per device in the user's slot.

use backend_store::{PrekeyFetch, PrekeyFetched, PrekeyUpload, StoreError};
use bytes::Bytes;
use protocol::limits::MAX_ONE_TIME_PREKEYS;
use protocol::{DeviceBundle, DeviceId, Key, OneTimePrekey, Signature, SignedPrekey};

use crate::keys;
use crate::store::{corrupt, value, RedisStore};

impl RedisStore {
    /// PREKEY_UPLOAD: returns the stock after it.
    pub(crate) async fn prekey_upload(&self, req: PrekeyUpload) -> Result<u32, StoreError> {
        let mut call = self.inner.scripts.prekey_upload.prepare_invoke();
        call.key(keys::prekeys(req.user, req.device))
            .key(keys::one_time(req.user, req.device))
            .key(keys::one_time_ids(req.user, req.device))
            .arg(req.identity_key.bytes().as_ref())
            .arg(req.signed_prekey.id)
            .arg(req.signed_prekey.key.bytes().as_ref())
            .arg(req.signed_prekey.signature.bytes().as_ref());
        // The decoder bounds the list; the store bounds it again on its own.
        for one in req.one_time.iter().take(MAX_ONE_TIME_PREKEYS) {
            call.arg(one.id).arg(one.key.bytes().as_ref());
        }
        self.invoke(call).await
    }

    /// PREKEY_FETCH: one bundle per device with keys (one device, or every
    /// registered one for device 0).
    pub(crate) async fn prekey_fetch(&self, req: PrekeyFetch) -> Result<PrekeyFetched, StoreError> {
        let devices: Vec<DeviceId> = if req.device.0 == 0 {
            let mut members = redis::cmd("SMEMBERS");
            members.arg(keys::devices(req.user));
            let mut ids: Vec<u32> = self.query(&members).await?;
            ids.sort_unstable();
            ids.into_iter().map(DeviceId).collect()
        } else {
            vec![req.device]
        };
        let mut fetched = PrekeyFetched { bundles: Vec::new(), low: Vec::new() };
        for device in devices {
            let mut call = self.inner.scripts.prekey_take.prepare_invoke();
            call.key(keys::prekeys(req.user, device))
                .key(keys::one_time(req.user, device))
                .key(keys::one_time_ids(req.user, device));
            let answer: Vec<redis::Value> = self.invoke(call).await?;
            let Some((bundle, stock)) = bundle(device, answer)? else { continue };
            if stock <= self.inner.config.prekey_low {
                fetched.low.push((device, stock));
            }
            fetched.bundles.push(bundle);
        }
        if fetched.bundles.is_empty() {
            return Err(StoreError::UnknownDevice(req.user));
        }
        Ok(fetched)
    }
}

/// The PREKEY_TAKE answer as a bundle and the stock left; `None` for a
/// device without keys.
fn bundle(device: DeviceId, answer: Vec<redis::Value>) -> Result<Option<(DeviceBundle, u32)>, StoreError> {
    let mut items = answer.into_iter();
    let Some(identity) = items.next() else { return Ok(None) };
    let mut next = || items.next().ok_or_else(|| corrupt("prekey answer"));
    let key = |bytes: Vec<u8>| Key::new(Bytes::from(bytes)).map_err(|_| corrupt("prekey"));
    let identity_key = key(value(identity)?)?;
    let id: u32 = value(next()?)?;
    let spk = key(value(next()?)?)?;
    let signature =
        Signature::new(Bytes::from(value::<Vec<u8>>(next()?)?)).map_err(|_| corrupt("prekey signature"))?;
    let stock: u32 = value(next()?)?;
    let one_id: i64 = value(next()?)?;
    let one_key: Vec<u8> = value(next()?)?;
    let one_time = match u32::try_from(one_id) {
        Ok(id) => Some(OneTimePrekey { id, key: key(one_key)? }),
        Err(_) => None,
    };
    let signed_prekey = SignedPrekey { id, key: spk, signature };
    Ok(Some((DeviceBundle { device, identity_key, signed_prekey, one_time }, stock)))
}
