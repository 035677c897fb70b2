//! An inbox entry as the list holds it: `seq id conv conv_seq view sender
//! device time`, space-separated (the conversation prefix has no space).

use protocol::{ConvSeq, Conversation, DeviceId, GroupId, MessageId, Seq, Timestamp, UserId};

/// One inbox entry, without the body (that lives once, in the
/// conversation's slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) seq: Seq,
    pub(crate) id: MessageId,
    /// The conversation's key prefix (where the body is).
    pub(crate) conv: String,
    pub(crate) conv_seq: ConvSeq,
    /// The conversation as the device names it.
    pub(crate) view: Conversation,
    pub(crate) sender: UserId,
    pub(crate) sender_device: DeviceId,
    pub(crate) time: Timestamp,
}

impl Entry {
    /// The entry without its seq (the script puts the seq in front).
    pub(crate) fn unsequenced(&self) -> String {
        format!(
            "{} {} {} {} {} {} {}",
            self.id.0,
            self.conv,
            self.conv_seq.0,
            view_text(self.view),
            self.sender.0,
            self.sender_device.0,
            self.time.0
        )
    }

    /// Parses a list element; `None` if it is not one this engine wrote.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut fields = text.split(' ');
        let mut next = || fields.next();
        let seq = Seq(next()?.parse().ok()?);
        let id = MessageId(next()?.parse().ok()?);
        let conv = next()?.to_owned();
        let conv_seq = ConvSeq(next()?.parse().ok()?);
        let view = parse_view(next()?)?;
        let sender = UserId(next()?.parse().ok()?);
        let sender_device = DeviceId(next()?.parse().ok()?);
        let time = Timestamp(next()?.parse().ok()?);
        Some(Self { seq, id, conv, conv_seq, view, sender, sender_device, time })
    }
}

/// A conversation as a device names it: `d<user>` or `g<group>`.
pub(crate) fn view_text(view: Conversation) -> String {
    match view {
        Conversation::Direct(user) => format!("d{}", user.0),
        Conversation::Group(group) => format!("g{}", group.0),
    }
}

/// Reads what [`view_text`] wrote.
pub(crate) fn parse_view(text: &str) -> Option<Conversation> {
    match text.split_at_checked(1)? {
        ("d", user) => Some(Conversation::Direct(UserId(user.parse().ok()?))),
        ("g", group) => Some(Conversation::Group(GroupId(group.parse().ok()?))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_as_written() {
        let entry = Entry {
            seq: Seq(0),
            id: MessageId(1 << 40),
            conv: "{p:3:9}:".to_owned(),
            conv_seq: ConvSeq(12),
            view: Conversation::Direct(UserId(3)),
            sender: UserId(3),
            sender_device: DeviceId(2),
            time: Timestamp(1_800_000_000_000),
        };
        let listed = format!("77 {}", entry.unsequenced());
        assert_eq!(Entry::parse(&listed), Some(Entry { seq: Seq(77), ..entry.clone() }));
        let group = Entry { view: Conversation::Group(GroupId(5)), ..entry };
        assert_eq!(Entry::parse(&format!("1 {}", group.unsequenced())).map(|e| e.view), Some(group.view));
        assert_eq!(Entry::parse("1 2 x"), None);
        assert_eq!(Entry::parse("1 2 {p:1:2}: 3 x9 1 1 1"), None);
    }
}
