//! [`Response`] ↔ the `ok` message of its rpc's reply, and the reply oneofs
//! (`ok` or `fault`) of every store rpc behind one [`Reply`] trait.

use backend_store::{
    Connected, GroupChanged, GroupInfo, InboxPage, PrekeyFetched, Response, Sent, StoreError,
    UnavailableError,
};
use protocol::{DeviceId, GroupId, Seq, Timestamp};

use super::fault::{fault_from_proto, fault_to_proto};
use super::{
    bundle_from_proto, bundle_to_proto, deliver_from_proto, deliver_to_proto, delivery_from_proto,
    delivery_to_proto, group_name_from_proto, member_from_proto, member_to_proto, message_from_proto,
    message_to_proto, receipts_from_proto, receipts_to_proto, required, visibility_from_proto,
    visibility_to_proto, Bad,
};
use crate::pb::store as pb;

/// A successful [`Response`] in proto form, one variant per `Response`
/// variant (Ack and Read answer `Receipts`, Cursors answers `Cursors`: both
/// travel as `pb::Receipts`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Answer {
    Connected(pb::Connected),
    Sent(pb::Sent),
    Receipts(pb::Receipts),
    GroupChanged(pb::GroupChanged),
    PrekeyStock(pb::PrekeyStock),
    PrekeyFetched(pb::PrekeyFetched),
    Done(pb::Empty),
    Visibility(i32),
    Inbox(pb::InboxPage),
    Group(pb::GroupInfo),
    Cursors(pb::Receipts),
}

impl Answer {
    /// The variant's name, for an error message.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Connected(_) => "Connected",
            Self::Sent(_) => "Sent",
            Self::Receipts(_) => "Receipts",
            Self::GroupChanged(_) => "GroupChanged",
            Self::PrekeyStock(_) => "PrekeyStock",
            Self::PrekeyFetched(_) => "PrekeyFetched",
            Self::Done(_) => "Done",
            Self::Visibility(_) => "Visibility",
            Self::Inbox(_) => "Inbox",
            Self::Group(_) => "Group",
            Self::Cursors(_) => "Cursors",
        }
    }
}

pub(crate) fn to_proto(response: Response) -> Answer {
    match response {
        Response::Connected(c) => Answer::Connected(pb::Connected {
            inbox_head: c.inbox_head.0,
            acked: c.acked.0,
            prekey_stock: c.prekey_stock,
            previous_connect: c.previous_connect.0,
        }),
        Response::Sent(s) => Answer::Sent(pb::Sent {
            message: Some(message_to_proto(s.message)),
            duplicate: s.duplicate,
            deliveries: s.deliveries.into_iter().map(delivery_to_proto).collect(),
            receipts: receipts_to_proto(s.receipts),
        }),
        Response::Receipts(notes) => Answer::Receipts(pb::Receipts { notes: receipts_to_proto(notes) }),
        Response::GroupChanged(g) => Answer::GroupChanged(pb::GroupChanged {
            info: Some(group_info_to_proto(g.info)),
            message: Some(message_to_proto(g.message)),
            deliveries: g.deliveries.into_iter().map(delivery_to_proto).collect(),
        }),
        Response::PrekeyStock(stock) => Answer::PrekeyStock(pb::PrekeyStock { stock }),
        Response::PrekeyFetched(f) => Answer::PrekeyFetched(pb::PrekeyFetched {
            bundles: f.bundles.into_iter().map(bundle_to_proto).collect(),
            low: f.low.into_iter().map(|(device, stock)| pb::PrekeyLow { device: device.0, stock }).collect(),
        }),
        Response::Done => Answer::Done(pb::Empty {}),
        Response::Visibility(v) => Answer::Visibility(visibility_to_proto(v)),
        Response::Inbox(page) => Answer::Inbox(pb::InboxPage {
            entries: page.entries.into_iter().map(deliver_to_proto).collect(),
            remaining: page.remaining,
            head: page.head.0,
        }),
        Response::Group(info) => Answer::Group(group_info_to_proto(info)),
        Response::Cursors(notes) => Answer::Cursors(pb::Receipts { notes: receipts_to_proto(notes) }),
    }
}

pub(crate) fn from_proto(answer: Answer) -> Result<Response, Bad> {
    Ok(match answer {
        Answer::Connected(c) => Response::Connected(Connected {
            inbox_head: Seq(c.inbox_head),
            acked: Seq(c.acked),
            prekey_stock: c.prekey_stock,
            previous_connect: Timestamp(c.previous_connect),
        }),
        Answer::Sent(s) => Response::Sent(Sent {
            message: message_from_proto(s.message, "Sent.message")?,
            duplicate: s.duplicate,
            deliveries: s.deliveries.into_iter().map(delivery_from_proto).collect::<Result<_, _>>()?,
            receipts: receipts_from_proto(s.receipts)?,
        }),
        Answer::Receipts(r) => Response::Receipts(receipts_from_proto(r.notes)?),
        Answer::GroupChanged(g) => Response::GroupChanged(GroupChanged {
            info: group_info_from_proto(required(g.info, "GroupChanged.info")?)?,
            message: message_from_proto(g.message, "GroupChanged.message")?,
            deliveries: g.deliveries.into_iter().map(delivery_from_proto).collect::<Result<_, _>>()?,
        }),
        Answer::PrekeyStock(p) => Response::PrekeyStock(p.stock),
        Answer::PrekeyFetched(f) => Response::PrekeyFetched(PrekeyFetched {
            bundles: f.bundles.into_iter().map(bundle_from_proto).collect::<Result<_, _>>()?,
            low: f.low.into_iter().map(|low| (DeviceId(low.device), low.stock)).collect(),
        }),
        Answer::Done(pb::Empty {}) => Response::Done,
        Answer::Visibility(v) => Response::Visibility(visibility_from_proto(v, "GetVisibilityReply.ok")?),
        Answer::Inbox(page) => Response::Inbox(InboxPage {
            entries: page.entries.into_iter().map(deliver_from_proto).collect::<Result<_, _>>()?,
            remaining: page.remaining,
            head: Seq(page.head),
        }),
        Answer::Group(info) => Response::Group(group_info_from_proto(info)?),
        Answer::Cursors(r) => Response::Cursors(receipts_from_proto(r.notes)?),
    })
}

fn group_info_to_proto(info: GroupInfo) -> pb::GroupInfo {
    pb::GroupInfo {
        group: info.group.0,
        version: info.version,
        name: info.name.as_str().to_owned(),
        members: info.members.into_iter().map(member_to_proto).collect(),
    }
}

fn group_info_from_proto(info: pb::GroupInfo) -> Result<GroupInfo, Bad> {
    Ok(GroupInfo {
        group: GroupId(info.group),
        version: info.version,
        name: group_name_from_proto(&info.name, "GroupInfo.name")?,
        members: info.members.into_iter().map(member_from_proto).collect::<Result<_, _>>()?,
    })
}

/// A store rpc's reply: a oneof of its `ok` message and a [`pb::Fault`].
pub(crate) trait Reply: Sized {
    /// The `ok` message.
    type Ok;
    /// The reply carrying `ok`.
    fn ok(ok: Self::Ok) -> Self;
    /// The reply carrying `fault`.
    fn fault(fault: pb::Fault) -> Self;
    /// Which one it carries (`None`: neither, a malformed reply).
    fn into_result(self) -> Option<Result<Self::Ok, pb::Fault>>;
}

macro_rules! reply {
    ($($reply:ident, $module:ident, $ok:ty;)+) => {$(
        impl Reply for pb::$reply {
            type Ok = $ok;
            fn ok(ok: $ok) -> Self {
                Self { result: Some(pb::$module::Result::Ok(ok)) }
            }
            fn fault(fault: pb::Fault) -> Self {
                Self { result: Some(pb::$module::Result::Fault(fault)) }
            }
            fn into_result(self) -> Option<Result<$ok, pb::Fault>> {
                match self.result? {
                    pb::$module::Result::Ok(ok) => Some(Ok(ok)),
                    pb::$module::Result::Fault(fault) => Some(Err(fault)),
                }
            }
        }
    )+};
}

reply! {
    ConnectReply, connect_reply, pb::Connected;
    SendReply, send_reply, pb::Sent;
    ReceiptsReply, receipts_reply, pb::Receipts;
    GroupChangedReply, group_changed_reply, pb::GroupChanged;
    PrekeyUploadReply, prekey_upload_reply, pb::PrekeyStock;
    PrekeyFetchReply, prekey_fetch_reply, pb::PrekeyFetched;
    SetVisibilityReply, set_visibility_reply, pb::Empty;
    GetVisibilityReply, get_visibility_reply, i32;
    InboxReply, inbox_reply, pb::InboxPage;
    GroupGetReply, group_get_reply, pb::GroupInfo;
}

/// The store's outcome as a reply: a fault, or `ok` when `pick` finds the
/// answer this rpc expects (`Err` with the name of the answer when the store
/// gave another kind, a store bug the caller reports).
pub(crate) fn reply<R: Reply>(
    outcome: Result<Response, StoreError>,
    pick: impl FnOnce(Answer) -> Result<R::Ok, &'static str>,
) -> Result<R, &'static str> {
    match outcome {
        Ok(response) => pick(to_proto(response)).map(R::ok),
        Err(error) => Ok(R::fault(fault_to_proto(error))),
    }
}

/// A reply as the store's outcome; `wrap` names the [`Answer`] variant of
/// this rpc's `ok`.
pub(crate) fn outcome<R: Reply>(
    reply: R,
    wrap: impl FnOnce(R::Ok) -> Answer,
) -> Result<Response, StoreError> {
    let bad = |bad: Bad| StoreError::Unavailable(UnavailableError::BadReply { why: bad.to_string() });
    match reply.into_result() {
        Some(Ok(ok)) => from_proto(wrap(ok)).map_err(bad),
        Some(Err(fault)) => Err(fault_from_proto(fault).map_err(bad)?),
        None => Err(bad(Bad::missing("result"))),
    }
}
