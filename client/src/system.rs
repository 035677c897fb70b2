//! System entries: inbox entries the server writes itself (SPEC §6.5).
//!
//! A delivery with `sender_device = 0` is a system entry. In v1 its payload is
//! one encoded GROUP_INFO frame (`request = 0`): the group after a membership
//! change, stored in the group's conversation so that it is ordered with the
//! messages around it and reaches offline members.

use protocol::{Decoder, Deliver, DeviceId, Frame, GroupInfo};

/// The group after a membership change, if `deliver` is a system entry
/// (`sender_device == DeviceId(0)`) whose payload is exactly one GROUP_INFO
/// frame; `None` for an ordinary message (whose payload is ciphertext) and
/// for a system entry this client does not understand.
///
/// The entry is acked like any other. A removed member gets this entry too,
/// without itself in `members`, and nothing of the group after it.
pub fn system_group_info(deliver: &Deliver) -> Option<GroupInfo> {
    if deliver.sender_device != DeviceId(0) {
        return None;
    }
    let mut frames = Decoder::new().message(deliver.payload.bytes().clone());
    let info = match frames.next()? {
        Ok(Frame::GroupInfo(info)) => info,
        _ => return None,
    };
    // Exactly one frame: anything after it makes the payload something else.
    frames.next().is_none().then_some(info)
}
