//! Key names (backend/store/REDIS.md, "Keys"). Every key of one user starts
//! with `{u:U}`, every key of a pair's conversation with `{p:A:B}` (A < B):
//! the hash tag puts them in one slot, so one script can change them
//! together.

use protocol::{Conversation, DeviceId, UserId};

/// The slot prefix of `user`'s keys.
pub(crate) fn user(user: UserId) -> String {
    format!("{{u:{}}}:", user.0)
}

/// `user`'s registered devices (a set).
pub(crate) fn devices(of: UserId) -> String {
    format!("{}devs", user(of))
}

/// A device's state: `head`, `acked`, `conn` (a hash).
pub(crate) fn device(of: UserId, device: DeviceId) -> String {
    format!("{}d:{}", user(of), device.0)
}

/// A device's inbox: a list of entries `seq id conv conv_seq view sender
/// device time`, in seq order.
pub(crate) fn inbox(of: UserId, device: DeviceId) -> String {
    format!("{}in:{}", user(of), device.0)
}

/// The last conv_seq each conversation entered the user's inboxes at (a
/// hash: conversation prefix → conv_seq), for the order check.
pub(crate) fn last_conv_seqs(of: UserId) -> String {
    format!("{}lc", user(of))
}

/// The user's own delivered and read cursors (a hash: `conv|kind` →
/// `up_to at`).
pub(crate) fn cursors(of: UserId) -> String {
    format!("{}cur", user(of))
}

/// The user's receipt mailbox (a hash: `view|owner|kind` → `up_to at`).
pub(crate) fn mailbox(of: UserId) -> String {
    format!("{}mb", user(of))
}

/// The user's presence visibility (a byte; unset: everyone).
pub(crate) fn visibility(of: UserId) -> String {
    format!("{}vis", user(of))
}

/// A device's identity key, signed prekey and signature (a hash).
pub(crate) fn prekeys(of: UserId, device: DeviceId) -> String {
    format!("{}pk:{}", user(of), device.0)
}

/// A device's one-time prekeys (a hash: id → key).
pub(crate) fn one_time(of: UserId, device: DeviceId) -> String {
    format!("{}ot:{}", user(of), device.0)
}

/// The ids of a device's one-time prekeys (a sorted set, lowest first).
pub(crate) fn one_time_ids(of: UserId, device: DeviceId) -> String {
    format!("{}oti:{}", user(of), device.0)
}

/// What the message at `conv_seq` of conversation `conv` entered in
/// `of`'s inboxes (`id device seq ...`, written by the enter step).
pub(crate) fn record(of: UserId, conv: &str, conv_seq: u64) -> String {
    format!("{}t:{conv}{conv_seq}", user(of))
}

/// A dedup record of (device, client id).
pub(crate) fn dedup(of: UserId, device: DeviceId, client_id: u64) -> String {
    format!("{}dd:{}:{}", user(of), device.0, client_id)
}

/// The slot prefix of the conversation `to` as `from` names it.
pub(crate) fn conversation(from: UserId, to: Conversation) -> String {
    match to {
        Conversation::Direct(other) => {
            let (a, b) = if from.0 <= other.0 { (from, other) } else { (other, from) };
            format!("{{p:{}:{}}}:", a.0, b.0)
        }
        Conversation::Group(group) => format!("{{g:{}}}:", group.0),
    }
}

/// A group's record: `v` version, `name`, `mem` members (`user:role:join`
/// in join order, join = the conv_seq of the system entry that added them).
pub(crate) fn group_info(prefix: &str) -> String {
    format!("{prefix}info")
}

/// The conversation's last conv_seq.
pub(crate) fn conv_seq(prefix: &str) -> String {
    format!("{prefix}seq")
}

/// The message at `conv_seq` (a hash).
pub(crate) fn message(prefix: &str, conv_seq: u64) -> String {
    format!("{prefix}m:{conv_seq}")
}

/// A dedup record of the append: (sender, device, client id) → conv_seq.
pub(crate) fn appended(prefix: &str, sender: UserId, device: DeviceId, client_id: u64) -> String {
    format!("{prefix}dd:{}:{}:{}", sender.0, device.0, client_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_of_a_pair_name_one_slot() {
        let (a, b) = (UserId(9), UserId(3));
        assert_eq!(conversation(a, Conversation::Direct(b)), conversation(b, Conversation::Direct(a)));
        assert_eq!(conversation(a, Conversation::Direct(b)), "{p:3:9}:");
        assert!(device(a, DeviceId(2)).starts_with(&user(a)));
        assert!(dedup(a, DeviceId(2), 7).starts_with(&user(a)));
        assert_eq!(record(a, "{p:3:9}:", 4), "{u:9}:t:{p:3:9}:4", "in the user's slot");
    }
}
