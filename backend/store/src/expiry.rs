//! Retention, on the writer: a periodic sweep walks the time-ordered expiry
//! index (`expiry`: `time id` → dedup key, conversation-log key, inbox
//! entries) and deletes what is older than `retention`: the message's inbox
//! entries still unacked, its body, its dedup record and its conversation-log
//! entry. Work per pass is bounded; readers skip expired entries meanwhile.

use protocol::{DeviceId, UserId};

use crate::api::StoreError;
use crate::codec::{convlog_key, inbox_key, ConvKey, Dec, Enc};
use crate::db::{Ks, Tx};

/// Most messages one sweep pass expires.
pub(crate) const SWEEP_LIMIT: usize = 1000;

/// Whether an entry stored at `time` is expired at `now`.
pub(crate) fn is_expired(time: u64, now: u64, retention_ms: u64) -> bool {
    time.saturating_add(retention_ms) <= now
}

/// One pass; returns whether more is due (the pass hit its limit).
pub(crate) fn sweep(tx: &mut Tx<'_>, retention_ms: u64) -> Result<bool, StoreError> {
    let cutoff = tx.now.saturating_sub(retention_ms);
    if cutoff == 0 {
        return Ok(false);
    }
    // Keys are `time id`: everything stored at or before `cutoff` is due.
    let end = Enc::default().u64(cutoff + 1).done();
    let due = tx.range(Ks::Expiry, &[], &end, SWEEP_LIMIT)?;
    for (key, value) in &due {
        let mut k = Dec::new(key);
        k.skip(8)?;
        let id = k.u64()?;
        let mut v = Dec::new(value);
        if v.u8()? == 1 {
            let mut dedup = Enc::default();
            dedup = dedup.u64(v.u64()?).u32(v.u32()?).u64(v.u64()?);
            tx.del(Ks::Dedup, dedup.done());
        }
        let conv = ConvKey::get(&mut v)?;
        tx.del(Ks::ConvLog, convlog_key(conv, v.u64()?));
        for _ in 0..v.u32()? {
            let entry = inbox_key(UserId(v.u64()?), DeviceId(v.u32()?), v.u64()?);
            if tx.get(Ks::Inbox, &entry)?.is_some() {
                tx.del(Ks::Inbox, entry);
                tx.expired += 1;
            }
        }
        let id_key = id.to_be_bytes().to_vec();
        if tx.get(Ks::Refs, &id_key)?.is_some() {
            tx.del(Ks::Refs, id_key.clone());
            tx.del(Ks::Messages, id_key);
            tx.deleted += 1;
        }
        tx.del(Ks::Expiry, key.clone());
    }
    Ok(due.len() == SWEEP_LIMIT)
}
