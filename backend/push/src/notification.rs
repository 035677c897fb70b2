//! The notification a device receives: what coalescing produces, what a
//! provider sends, and its JSON body (documented in the crate README).

use protocol::{Conversation, DeviceId, Seq, UserId};
use serde::Serialize;

/// One coalesced notification for one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    /// Recipient user.
    pub user: UserId,
    /// Recipient device.
    pub device: DeviceId,
    /// Notes coalesced into this notification (>= 1).
    pub count: u32,
    /// Highest inbox seq among them.
    pub seq: Seq,
    /// Conversation of the entry with the highest seq.
    pub conversation: Conversation,
    /// Sender of the entry with the highest seq (0 for a system entry).
    pub sender: UserId,
    /// Wall clock when the first note arrived (ms since the Unix epoch).
    pub first_at_ms: u64,
    /// Wall clock of the current try (ms since the Unix epoch); set per try.
    pub sent_at_ms: u64,
}

/// The JSON body, field for field as the README documents it.
#[derive(Debug, Serialize)]
struct Body {
    user: u64,
    device: u32,
    count: u32,
    seq: u64,
    conversation: ConversationBody,
    sender: u64,
    collapse_key: String,
    first_at_ms: u64,
    sent_at_ms: u64,
}

/// `{"direct": user}` or `{"group": id}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
enum ConversationBody {
    Direct(u64),
    Group(u64),
}

/// A dead-letter line: the body plus why it was given up.
#[derive(Debug, Serialize)]
struct DeadLetterLine<'a> {
    #[serde(flatten)]
    body: Body,
    tries: u32,
    error: &'a str,
}

impl Notification {
    /// `inbox-<user>-<device>`: lets a provider (APNs `apns-collapse-id`, FCM
    /// `collapse_key`) replace an older notification for the same device
    /// instead of stacking a second one.
    pub fn collapse_key(&self) -> String {
        format!("inbox-{}-{}", self.user, self.device)
    }

    /// The JSON body a webhook receives.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain integers and strings into a Vec cannot fail.
        serde_json::to_vec(&self.body()).unwrap_or_default()
    }

    /// One dead-letter line (no trailing newline): the body plus `tries` and `error`.
    pub(crate) fn dead_letter_json(&self, tries: u32, error: &str) -> Vec<u8> {
        serde_json::to_vec(&DeadLetterLine { body: self.body(), tries, error }).unwrap_or_default()
    }

    fn body(&self) -> Body {
        Body {
            user: self.user.0,
            device: self.device.0,
            count: self.count,
            seq: self.seq.0,
            conversation: match self.conversation {
                Conversation::Direct(user) => ConversationBody::Direct(user.0),
                Conversation::Group(group) => ConversationBody::Group(group.0),
            },
            sender: self.sender.0,
            collapse_key: self.collapse_key(),
            first_at_ms: self.first_at_ms,
            sent_at_ms: self.sent_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use protocol::GroupId;
    use serde_json::{json, Value};

    use super::*;

    fn sample(conversation: Conversation) -> Notification {
        Notification {
            user: UserId(7),
            device: DeviceId(2),
            count: 3,
            seq: Seq(41),
            conversation,
            sender: UserId(9),
            first_at_ms: 1000,
            sent_at_ms: 3000,
        }
    }

    #[test]
    fn body_matches_readme() {
        let body: Value = serde_json::from_slice(&sample(Conversation::Direct(UserId(9))).to_json()).unwrap();
        assert_eq!(
            body,
            json!({"user": 7, "device": 2, "count": 3, "seq": 41, "conversation": {"direct": 9},
                   "sender": 9, "collapse_key": "inbox-7-2", "first_at_ms": 1000, "sent_at_ms": 3000})
        );
        let group: Value =
            serde_json::from_slice(&sample(Conversation::Group(GroupId(5))).to_json()).unwrap();
        assert_eq!(group["conversation"], json!({"group": 5}));
    }

    #[test]
    fn dead_letter_line_adds_tries_and_error() {
        let line = sample(Conversation::Direct(UserId(9))).dead_letter_json(5, "HTTP 500");
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["tries"], 5);
        assert_eq!(v["error"], "HTTP 500");
        assert_eq!(v["collapse_key"], "inbox-7-2");
        assert!(!line.contains(&b'\n'));
    }
}
