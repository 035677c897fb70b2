//! The rooms of the broadcast hub: one `tokio::sync::broadcast` channel per
//! room, created on the first join and removed when the last member leaves.
//!
//! Slow readers: a room's channel holds the last `capacity` messages. Senders
//! never wait; a member further behind than that skips the oldest messages
//! (`RecvError::Lagged`) and stays connected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::broadcast::{self, error::RecvError};
use tokio_tungstenite::tungstenite::Message;

/// A message on a room's channel: the sending member's id and the message.
type Relayed = (u64, Message);

/// All rooms, by name.
#[derive(Debug)]
pub(crate) struct Hub {
    rooms: Mutex<HashMap<String, Room>>,
    next_id: AtomicU64,
    capacity: usize,
}

#[derive(Debug)]
struct Room {
    tx: broadcast::Sender<Relayed>,
    members: usize,
}

impl Hub {
    /// A hub whose rooms buffer `capacity` messages (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self { rooms: Mutex::new(HashMap::new()), next_id: AtomicU64::new(0), capacity: capacity.max(1) }
    }

    /// Joins `room`, creating it if needed. The member leaves when dropped.
    pub(crate) fn join(self: &Arc<Self>, room: String) -> Member {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut rooms = self.rooms();
        let entry = rooms
            .entry(room.clone())
            .or_insert_with(|| Room { tx: broadcast::channel(self.capacity).0, members: 0 });
        entry.members += 1;
        let (tx, rx) = (entry.tx.clone(), entry.tx.subscribe());
        Member { hub: Arc::clone(self), room, id, tx, rx }
    }

    /// How many rooms exist (for tests).
    #[cfg(test)]
    fn room_count(&self) -> usize {
        self.rooms().len()
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<String, Room>> {
        // The map stays consistent even if a holder panicked: every update is
        // a single insert, increment or remove.
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's membership of a room.
#[derive(Debug)]
pub(crate) struct Member {
    hub: Arc<Hub>,
    room: String,
    id: u64,
    tx: broadcast::Sender<Relayed>,
    rx: broadcast::Receiver<Relayed>,
}

impl Member {
    /// Sends `message` to the room's other members; never waits.
    pub(crate) fn publish(&self, message: Message) {
        // An error means no receiver, which cannot happen while `self.rx`
        // lives; nothing to do either way.
        let _ = self.tx.send((self.id, message));
    }

    /// The next message from another member (cancel-safe). `Lagged(n)`: this
    /// member fell behind and `n` messages were skipped.
    pub(crate) async fn recv(&mut self) -> Result<Message, RecvError> {
        loop {
            let (from, message) = self.rx.recv().await?;
            if from != self.id {
                return Ok(message);
            }
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut rooms = self.hub.rooms();
        if let Some(room) = rooms.get_mut(&self.room) {
            room.members = room.members.saturating_sub(1);
            if room.members == 0 {
                rooms.remove(&self.room);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::broadcast::error::RecvError;
    use tokio_tungstenite::tungstenite::Message;

    use super::Hub;

    #[tokio::test]
    async fn others_receive_and_empty_rooms_go() {
        let hub = Arc::new(Hub::new(4));
        let (a, mut b, mut c) = (hub.join("r".into()), hub.join("r".into()), hub.join("s".into()));
        assert_eq!(hub.room_count(), 2);
        a.publish(Message::binary(&b"x"[..]));
        assert_eq!(b.recv().await.unwrap(), Message::binary(&b"x"[..]));
        assert!(c.rx.try_recv().is_err());
        drop(c);
        assert_eq!(hub.room_count(), 1);
        drop((a, b));
        assert_eq!(hub.room_count(), 0);
    }

    #[tokio::test]
    async fn slow_reader_skips_oldest() {
        let hub = Arc::new(Hub::new(2));
        let (a, mut b) = (hub.join("r".into()), hub.join("r".into()));
        for i in 0..5u8 {
            a.publish(Message::binary(vec![i]));
        }
        assert_eq!(b.recv().await, Err(RecvError::Lagged(3)));
        assert_eq!(b.recv().await.unwrap(), Message::binary(vec![3]));
        assert_eq!(b.recv().await.unwrap(), Message::binary(vec![4]));
    }
}
