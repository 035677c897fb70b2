//! The node directory: which worker and session hold each (user, device).
//!
//! Touched at authentication and at close, never per frame: a second
//! connection of a device finds the first here and replaces it (close 4007).
//! Sharded by user so that workers authenticating different users do not
//! contend; each shard is a short critical section.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use protocol::{DeviceId, UserId};

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

const SHARDS: usize = 64;

/// (user, device) → session, for the whole node.
#[derive(Debug)]
pub struct Directory {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<(UserId, DeviceId), SessionRef>>>,
}

impl Default for Directory {
    fn default() -> Self {
        Self { hasher: RandomState::new(), shards: (0..SHARDS).map(|_| Mutex::default()).collect() }
    }
}

impl Directory {
    // `index < SHARDS == shards.len()`, so the index is in bounds.
    #[allow(clippy::indexing_slicing)]
    fn shard(&self, user: UserId) -> &Mutex<HashMap<(UserId, DeviceId), SessionRef>> {
        let index = (self.hasher.hash_one(user) as usize) % SHARDS;
        &self.shards[index]
    }

    /// Records `session` as the device's session; returns the one it replaces.
    pub fn insert(&self, user: UserId, device: DeviceId, session: SessionRef) -> Option<SessionRef> {
        let mut shard = self.shard(user).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        shard.insert((user, device), session).filter(|old| *old != session)
    }

    /// Forgets the device's session if it is still `session` (a replaced
    /// session must not remove its replacement).
    pub fn remove(&self, user: UserId, device: DeviceId, session: SessionRef) {
        let mut shard = self.shard(user).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if shard.get(&(user, device)) == Some(&session) {
            shard.remove(&(user, device));
        }
    }

    /// Number of devices connected.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map_or(0, |s| s.len())).sum()
    }

    /// Whether no device is connected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_and_stale_removal() {
        let dir = Directory::default();
        let a = SessionRef { worker: 0, key: 1, generation: 1 };
        let b = SessionRef { worker: 1, key: 5, generation: 2 };
        assert_eq!(dir.insert(UserId(7), DeviceId(1), a), None);
        assert_eq!(dir.insert(UserId(7), DeviceId(1), b), Some(a));
        // The replaced session closing must not remove its replacement.
        dir.remove(UserId(7), DeviceId(1), a);
        assert_eq!(dir.len(), 1);
        dir.remove(UserId(7), DeviceId(1), b);
        assert!(dir.is_empty());
    }
}
