//! The node directory: for each user, which worker and session hold each of
//! its devices, who watches its presence, and its presence state.
//!
//! Touched at authentication and close, once per recipient *user* of a
//! delivery or receipt (not per frame, not per device), and for presence
//! subscriptions. Sharded by user so that workers touching different users do
//! not contend; each shard is a short critical section that copies out what
//! the caller needs into the caller's buffer (no allocation under the lock
//! in steady state).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

use protocol::{DeviceId, PresenceStatus, Timestamp, UserId, Visibility};
use smallvec::SmallVec;

/// A session somewhere on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef {
    /// Worker index.
    pub worker: usize,
    /// Slab key in that worker.
    pub key: usize,
    /// Distinguishes successive sessions that reuse one slab key.
    pub generation: u64,
}

impl SessionRef {
    /// The session's id in the fleet's registry: its worker and generation,
    /// unique within one epoch of the node (generations never repeat in a
    /// worker; 48 bits of them last any process).
    pub fn placement_id(&self) -> u64 {
        ((self.worker as u64) << 48) | (self.generation & ((1 << 48) - 1))
    }
}

const SHARDS: usize = 64;

/// What the node knows of one user: kept small, since every connected user
/// has one (72 bytes; the first device inline, what only some users need
/// boxed).
#[derive(Debug, Default)]
struct UserEntry {
    /// Connected devices (one inline: most users have one).
    devices: SmallVec<[(DeviceId, SessionRef); 1]>,
    /// When the last device left (ms), 0 while connected or never seen here.
    left_at: u64,
    /// `ANNOUNCED`, `VISIBILITY_KNOWN`, `VISIBILITY_SET`, `HIDDEN`.
    flags: u8,
    /// Watchers and the prekey-fetch budget, for the users that have them.
    social: Option<Box<Social>>,
}

/// Watchers told "online" (so "offline" is announced after the grace period).
const ANNOUNCED: u8 = 1;
/// The user's visibility is known (read from the store, or set by one of its
/// sessions). Until it is, watchers see the user as hidden: presence fails
/// closed, never open.
const VISIBILITY_KNOWN: u8 = 2;
/// Visibility `nobody`.
const HIDDEN: u8 = 4;
/// A session on this node set the visibility (PRESENCE_SET). A store read
/// answers later than the write it may precede (readers and the writer are
/// separate threads, and a read sent at login can still be queued when the
/// client's PRESENCE_SET arrives), so from then on store reads no longer
/// change it: the user's own latest choice wins.
const VISIBILITY_SET: u8 = 8;

/// The parts of a [`UserEntry`] only some users need.
#[derive(Debug, Default)]
struct Social {
    /// Sessions watching this user's presence.
    watchers: Vec<SessionRef>,
    /// PREKEY_FETCH token bucket: tokens and the time (ms) they were counted.
    fetch_tokens: (f64, u64),
}

impl UserEntry {
    fn is_idle(&self) -> bool {
        self.devices.is_empty()
            && self.social.as_ref().is_none_or(|s| s.watchers.is_empty())
            && self.left_at == 0
    }

    fn watchers(&self) -> &[SessionRef] {
        self.social.as_ref().map_or(&[], |social| &social.watchers)
    }

    fn set_visibility(&mut self, visibility: Visibility) {
        self.flags |= VISIBILITY_KNOWN;
        match visibility {
            Visibility::Nobody => self.flags |= HIDDEN,
            Visibility::Everyone => self.flags &= !HIDDEN,
        }
    }

    fn social(&mut self) -> &mut Social {
        self.social.get_or_insert_with(Box::default)
    }

    /// Whether watchers must not see this user (visibility `nobody`, or not
    /// known yet).
    fn hidden(&self) -> bool {
        self.flags & HIDDEN != 0 || self.flags & VISIBILITY_KNOWN == 0
    }
}

/// What a presence change means for watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceView {
    /// Online or offline, as watchers may see it.
    pub status: PresenceStatus,
    /// Last connected (ms), 0 when hidden or unknown.
    pub last_seen: Timestamp,
}

/// user → devices, watchers and presence, for the whole node.
#[derive(Debug)]
pub struct Directory {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<UserId, UserEntry>>>,
}

impl Default for Directory {
    fn default() -> Self {
        Self { hasher: RandomState::new(), shards: (0..SHARDS).map(|_| Mutex::default()).collect() }
    }
}

impl Directory {
    // `index < SHARDS == shards.len()`, so the index is in bounds.
    #[allow(clippy::indexing_slicing)]
    fn shard(&self, user: UserId) -> MutexGuard<'_, HashMap<UserId, UserEntry>> {
        let index = (self.hasher.hash_one(user) as usize) % SHARDS;
        self.shards[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every connected device of the node with its session, into `out`
    /// (a fenced node places them all again).
    pub fn sessions(&self, out: &mut Vec<(UserId, DeviceId, SessionRef)>) {
        out.clear();
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (user, entry) in shard.iter() {
                out.extend(entry.devices.iter().map(|(device, session)| (*user, *device, *session)));
            }
        }
    }

    /// Records `session` as the device's session. Returns the session it
    /// replaces, and whether the user just came online (its watchers are
    /// told once its visibility is known: [`Directory::visibility_read`]).
    pub fn insert(&self, user: UserId, device: DeviceId, session: SessionRef) -> (Option<SessionRef>, bool) {
        let mut shard = self.shard(user);
        let entry = shard.entry(user).or_default();
        let replaced = match entry.devices.iter_mut().find(|(d, _)| *d == device) {
            Some(slot) => Some(std::mem::replace(&mut slot.1, session)).filter(|old| *old != session),
            None => {
                entry.devices.push((device, session));
                None
            }
        };
        entry.left_at = 0;
        let came_online = entry.flags & ANNOUNCED == 0;
        entry.flags |= ANNOUNCED;
        (replaced, came_online)
    }

    /// Records the user's visibility as read from the store at login, unless
    /// a session here has set it since ([`Directory::set_visibility`] wins),
    /// and, when `came_online` and the user may be seen, copies the watchers
    /// to tell into `watchers`.
    pub fn visibility_read(
        &self,
        user: UserId,
        visibility: Visibility,
        came_online: bool,
        watchers: &mut Vec<SessionRef>,
    ) {
        let mut shard = self.shard(user);
        let entry = shard.entry(user).or_default();
        if entry.flags & VISIBILITY_SET == 0 {
            entry.set_visibility(visibility);
        }
        if came_online && !entry.hidden() && !entry.devices.is_empty() {
            watchers.extend_from_slice(entry.watchers());
        }
    }

    /// Records the visibility a session of the user set (PRESENCE_SET); store
    /// reads answered later no longer change it. Copies the watchers into
    /// `watchers` and returns what they may see now.
    pub fn set_visibility(
        &self,
        user: UserId,
        visibility: Visibility,
        now_ms: u64,
        grace_ms: u64,
        watchers: &mut Vec<SessionRef>,
    ) -> PresenceView {
        let mut shard = self.shard(user);
        let entry = shard.entry(user).or_default();
        entry.set_visibility(visibility);
        entry.flags |= VISIBILITY_SET;
        watchers.extend_from_slice(entry.watchers());
        view(entry, now_ms, grace_ms)
    }

    /// Forgets the device's session if it is still `session` (a replaced
    /// session must not remove its replacement). Returns true when it was the
    /// user's last device (its presence turns offline after the grace period).
    pub fn remove(&self, user: UserId, device: DeviceId, session: SessionRef, now_ms: u64) -> bool {
        let mut shard = self.shard(user);
        let Some(entry) = shard.get_mut(&user) else { return false };
        let before = entry.devices.len();
        entry.devices.retain(|(d, s)| !(*d == device && *s == session));
        let last = before != entry.devices.len() && entry.devices.is_empty();
        if last {
            entry.left_at = now_ms.max(1);
        }
        last
    }

    /// Copies the user's connected devices into `out` (cleared first).
    pub fn devices(&self, user: UserId, out: &mut Vec<(DeviceId, SessionRef)>) {
        out.clear();
        if let Some(entry) = self.shard(user).get(&user) {
            out.extend_from_slice(&entry.devices);
        }
    }

    /// The device's session, if it is connected here.
    pub fn session(&self, user: UserId, device: DeviceId) -> Option<SessionRef> {
        let shard = self.shard(user);
        shard.get(&user)?.devices.iter().find(|(d, _)| *d == device).map(|(_, s)| *s)
    }

    /// Adds `watcher` to the user's watchers and returns what it may see now.
    pub fn watch(&self, user: UserId, watcher: SessionRef, now_ms: u64, grace_ms: u64) -> PresenceView {
        let mut shard = self.shard(user);
        let entry = shard.entry(user).or_default();
        let social = entry.social();
        if !social.watchers.contains(&watcher) {
            social.watchers.push(watcher);
        }
        view(entry, now_ms, grace_ms)
    }

    /// Removes `watcher` from the user's watchers; true when nobody on
    /// this node watches the user any more.
    pub fn unwatch(&self, user: UserId, watcher: SessionRef) -> bool {
        let mut shard = self.shard(user);
        let Some(entry) = shard.get_mut(&user) else { return true };
        if let Some(social) = entry.social.as_mut() {
            social.watchers.retain(|w| *w != watcher);
        }
        let unwatched = entry.watchers().is_empty();
        if entry.is_idle() {
            shard.remove(&user);
        }
        unwatched
    }

    /// Copies the sessions watching `user` into `out` (cleared first).
    pub fn watchers(&self, user: UserId, out: &mut Vec<SessionRef>) {
        out.clear();
        if let Some(entry) = self.shard(user).get(&user) {
            out.extend_from_slice(entry.watchers());
        }
    }

    /// What watchers may see of `user` now, if it has a device on this node
    /// (another node asks, in a fleet).
    pub fn presence(&self, user: UserId, now_ms: u64, grace_ms: u64) -> Option<PresenceView> {
        let shard = self.shard(user);
        let entry = shard.get(&user).filter(|entry| !entry.devices.is_empty())?;
        Some(view(entry, now_ms, grace_ms))
    }

    /// After the grace period: if the user is still without a device since
    /// `left_at`, it is now offline; copies its watchers into `watchers` and
    /// returns what they may see. `None` if it came back (or was announced).
    pub fn expire_presence(
        &self,
        user: UserId,
        left_at: u64,
        watchers: &mut Vec<SessionRef>,
    ) -> Option<PresenceView> {
        let mut shard = self.shard(user);
        let entry = shard.get_mut(&user)?;
        if !entry.devices.is_empty() || entry.left_at != left_at || entry.flags & ANNOUNCED == 0 {
            return None;
        }
        entry.flags &= !ANNOUNCED;
        watchers.extend_from_slice(entry.watchers());
        let last_seen = if entry.hidden() { 0 } else { left_at };
        Some(PresenceView { status: PresenceStatus::Offline, last_seen: Timestamp(last_seen) })
    }

    /// Takes one PREKEY_FETCH token of the user's bucket (`per_min` a minute,
    /// burst `per_min`); false when empty.
    pub fn take_fetch_token(&self, user: UserId, now_ms: u64, per_min: u32) -> bool {
        let mut shard = self.shard(user);
        let social = shard.entry(user).or_default().social();
        let capacity = f64::from(per_min);
        let (tokens, at) = social.fetch_tokens;
        let tokens = if at == 0 {
            capacity
        } else {
            (tokens + now_ms.saturating_sub(at) as f64 * capacity / 60_000.0).min(capacity)
        };
        let allowed = tokens >= 1.0;
        social.fetch_tokens = (if allowed { tokens - 1.0 } else { tokens }, now_ms);
        allowed
    }

    /// Number of devices connected.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map_or(0, |s| s.values().map(|e| e.devices.len()).sum())).sum()
    }

    /// Whether no device is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a watcher may see of `entry` now.
fn view(entry: &UserEntry, now_ms: u64, grace_ms: u64) -> PresenceView {
    if entry.hidden() {
        return PresenceView { status: PresenceStatus::Offline, last_seen: Timestamp(0) };
    }
    let online = !entry.devices.is_empty() || (entry.left_at != 0 && now_ms < entry.left_at + grace_ms);
    match online {
        true => PresenceView { status: PresenceStatus::Online, last_seen: Timestamp(now_ms) },
        false => PresenceView { status: PresenceStatus::Offline, last_seen: Timestamp(entry.left_at) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SessionRef = SessionRef { worker: 0, key: 1, generation: 1 };
    const B: SessionRef = SessionRef { worker: 1, key: 5, generation: 2 };
    const W: SessionRef = SessionRef { worker: 1, key: 9, generation: 3 };

    #[test]
    fn replacement_and_stale_removal() {
        let dir = Directory::default();
        assert_eq!(dir.insert(UserId(7), DeviceId(1), A), (None, true));
        assert_eq!(dir.insert(UserId(7), DeviceId(1), B), (Some(A), false));
        // The replaced session closing must not remove its replacement.
        assert!(!dir.remove(UserId(7), DeviceId(1), A, 10));
        assert_eq!(dir.len(), 1);
        assert!(dir.remove(UserId(7), DeviceId(1), B, 10));
        assert!(dir.is_empty());
    }

    #[test]
    fn presence_has_a_grace_period_and_respects_visibility() {
        let dir = Directory::default();
        let mut watchers = Vec::new();
        assert_eq!(dir.watch(UserId(7), W, 100, 50).status, PresenceStatus::Offline);
        let (_, online) = dir.insert(UserId(7), DeviceId(1), A);
        assert!(online);
        dir.visibility_read(UserId(7), Visibility::Everyone, online, &mut watchers);
        assert_eq!(watchers, vec![W]);
        assert!(dir.remove(UserId(7), DeviceId(1), A, 1_000));
        // Within the grace period the user still looks online.
        assert_eq!(dir.watch(UserId(7), W, 1_020, 50).status, PresenceStatus::Online);
        watchers.clear();
        let view = dir.expire_presence(UserId(7), 1_000, &mut watchers).unwrap();
        assert_eq!(view, PresenceView { status: PresenceStatus::Offline, last_seen: Timestamp(1_000) });
        assert_eq!(watchers, vec![W]);
        // A reconnect within the grace period is not announced twice.
        dir.insert(UserId(7), DeviceId(1), A);
        dir.remove(UserId(7), DeviceId(1), A, 2_000);
        let (_, online) = dir.insert(UserId(7), DeviceId(1), B);
        assert!(!online);
        assert!(dir.expire_presence(UserId(7), 2_000, &mut watchers).is_none());
        watchers.clear();
        dir.visibility_read(UserId(7), Visibility::Nobody, true, &mut watchers);
        assert!(watchers.is_empty(), "a hidden user is never announced");
        let hidden = dir.watch(UserId(7), W, 3_000, 50);
        assert_eq!(hidden, PresenceView { status: PresenceStatus::Offline, last_seen: Timestamp(0) });
    }

    #[test]
    fn a_user_is_hidden_until_its_visibility_is_known() {
        let dir = Directory::default();
        let mut watchers = Vec::new();
        dir.watch(UserId(7), W, 100, 50);
        let (_, online) = dir.insert(UserId(7), DeviceId(1), A);
        // Connected, but the store has not said yet whether it may be seen.
        let unknown = dir.watch(UserId(7), W, 200, 50);
        assert_eq!(unknown, PresenceView { status: PresenceStatus::Offline, last_seen: Timestamp(0) });
        dir.visibility_read(UserId(7), Visibility::Everyone, online, &mut watchers);
        assert_eq!(watchers, vec![W]);
        assert_eq!(dir.watch(UserId(7), W, 300, 50).status, PresenceStatus::Online);
    }

    #[test]
    fn a_store_read_answered_after_a_presence_set_does_not_undo_it() {
        // The race of issue 12: the login's visibility read (from before the
        // client's PRESENCE_SET was stored) answered after the set.
        let dir = Directory::default();
        let mut watchers = Vec::new();
        dir.watch(UserId(7), W, 100, 50);
        let (_, online) = dir.insert(UserId(7), DeviceId(1), A);
        let view = dir.set_visibility(UserId(7), Visibility::Nobody, 200, 50, &mut watchers);
        assert_eq!(view, PresenceView { status: PresenceStatus::Offline, last_seen: Timestamp(0) });
        assert_eq!(watchers, vec![W], "watchers hear the setting at once");
        watchers.clear();
        dir.visibility_read(UserId(7), Visibility::Everyone, online, &mut watchers);
        assert!(watchers.is_empty(), "the stale read announced the hidden user");
        let seen = dir.watch(UserId(7), W, 300, 50);
        assert_eq!(seen, PresenceView { status: PresenceStatus::Offline, last_seen: Timestamp(0) });
        // The same for a second device logging in later: the set still wins,
        // and a set back to `everyone` shows the user again.
        let (_, online) = dir.insert(UserId(7), DeviceId(2), B);
        dir.visibility_read(UserId(7), Visibility::Everyone, online, &mut watchers);
        assert_eq!(dir.watch(UserId(7), W, 400, 50).status, PresenceStatus::Offline);
        let view = dir.set_visibility(UserId(7), Visibility::Everyone, 500, 50, &mut watchers);
        assert_eq!(view.status, PresenceStatus::Online);
    }

    #[test]
    fn a_user_entry_stays_small() {
        let size = std::mem::size_of::<UserEntry>();
        assert!(size <= 72, "UserEntry grew to {size} bytes");
    }

    #[test]
    fn prekey_fetches_are_rate_limited_per_user() {
        let dir = Directory::default();
        let allowed = (0..5).filter(|_| dir.take_fetch_token(UserId(1), 1_000, 3)).count();
        assert_eq!(allowed, 3);
        // A minute refills the bucket.
        assert!(dir.take_fetch_token(UserId(1), 61_000, 3));
    }
}
