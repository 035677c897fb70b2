//! The pipeline's replies: a store outcome as the [`pb::EnvelopeReply`] field
//! that matches its request's [`Kind`] (the server's side), and such a field
//! back as the outcome (the client's side), checking that it matches.

use backend_store::{GrpcCode, Response, StoreError, UnavailableError};
use tonic::{Code, Status};

use super::request::Kind;
use super::response::{outcome, reply, Answer};
use crate::pb::store as pb;
use crate::pb::store::envelope_reply::Reply as Field;

/// The `ok` of one [`Answer`] variant, or the name of the variant found.
macro_rules! pick {
    ($variant:ident) => {
        |answer| match answer {
            Answer::$variant(ok) => Ok(ok),
            other => Err(other.name()),
        }
    };
}

/// The store's outcome of a `kind` request as its reply field; `Err` with the
/// name of the answer when the store gave another kind (a store bug the
/// server reports as a [`failure`]).
pub(crate) fn reply_to_proto(
    kind: Kind,
    outcome: Result<Response, StoreError>,
) -> Result<Field, &'static str> {
    Ok(match kind {
        Kind::Connect => Field::Connect(reply(outcome, pick!(Connected))?),
        Kind::Send => Field::Send(reply(outcome, pick!(Sent))?),
        Kind::Ack => Field::Ack(reply(outcome, pick!(Receipts))?),
        Kind::Read => Field::Read(reply(outcome, pick!(Receipts))?),
        Kind::Group => Field::Group(reply(outcome, pick!(GroupChanged))?),
        Kind::PrekeyUpload => Field::PrekeyUpload(reply(outcome, pick!(PrekeyStock))?),
        Kind::PrekeyFetch => Field::PrekeyFetch(reply(outcome, pick!(PrekeyFetched))?),
        Kind::SetVisibility => Field::SetVisibility(reply(outcome, pick!(Done))?),
        Kind::GetVisibility => Field::GetVisibility(reply(outcome, pick!(Visibility))?),
        Kind::Inbox => Field::Inbox(reply(outcome, pick!(Inbox))?),
        Kind::GroupGet => Field::GroupGet(reply(outcome, pick!(Group))?),
        Kind::Cursors => Field::Cursors(reply(outcome, pick!(Cursors))?),
    })
}

/// A request that failed as a call, as its reply field.
pub(crate) fn failure(code: Code, message: impl Into<String>) -> Field {
    Field::Failure(pb::CallFailure { code: code as i32, message: message.into() })
}

/// A reply field as the outcome of the `kind` request it answers. A reply of
/// another kind, or none, is `Unavailable("bad reply from the store: ...")`.
pub(crate) fn reply_from_proto(kind: Kind, field: Option<Field>) -> Result<Response, StoreError> {
    match (kind, field) {
        (Kind::Connect, Some(Field::Connect(r))) => outcome(r, Answer::Connected),
        (Kind::Send, Some(Field::Send(r))) => outcome(r, Answer::Sent),
        (Kind::Ack, Some(Field::Ack(r))) => outcome(r, Answer::Receipts),
        (Kind::Read, Some(Field::Read(r))) => outcome(r, Answer::Receipts),
        (Kind::Group, Some(Field::Group(r))) => outcome(r, Answer::GroupChanged),
        (Kind::PrekeyUpload, Some(Field::PrekeyUpload(r))) => outcome(r, Answer::PrekeyStock),
        (Kind::PrekeyFetch, Some(Field::PrekeyFetch(r))) => outcome(r, Answer::PrekeyFetched),
        (Kind::SetVisibility, Some(Field::SetVisibility(r))) => outcome(r, Answer::Done),
        (Kind::GetVisibility, Some(Field::GetVisibility(r))) => outcome(r, Answer::Visibility),
        (Kind::Inbox, Some(Field::Inbox(r))) => outcome(r, Answer::Inbox),
        (Kind::GroupGet, Some(Field::GroupGet(r))) => outcome(r, Answer::Group),
        (Kind::Cursors, Some(Field::Cursors(r))) => outcome(r, Answer::Cursors),
        (_, Some(Field::Failure(failure))) => {
            Err(status_to_error(&Status::new(Code::from(failure.code), failure.message)))
        }
        (kind, Some(other)) => {
            Err(bad_reply(format!("a `{}` reply to a `{}` request", field_name(&other), kind.name())))
        }
        (_, None) => Err(bad_reply("field `EnvelopeReply.reply`: required, absent".into())),
    }
}

/// A failed call: the store's own shedding stays `Overloaded` (retry later),
/// everything else means the store could not be used: `Unavailable`.
pub(crate) fn status_to_error(status: &Status) -> StoreError {
    match status.code() {
        Code::ResourceExhausted => StoreError::Overloaded,
        code => StoreError::Unavailable(UnavailableError::Status {
            code: GrpcCode::from_number(code as i32),
            message: status.message().to_owned(),
        }),
    }
}

fn bad_reply(why: String) -> StoreError {
    StoreError::Unavailable(UnavailableError::BadReply { why })
}

/// The oneof field's name, for an error message.
fn field_name(field: &Field) -> &'static str {
    match field {
        Field::Connect(_) => "connect",
        Field::Send(_) => "send",
        Field::Ack(_) => "ack",
        Field::Read(_) => "read",
        Field::Group(_) => "group",
        Field::PrekeyUpload(_) => "prekey_upload",
        Field::PrekeyFetch(_) => "prekey_fetch",
        Field::SetVisibility(_) => "set_visibility",
        Field::GetVisibility(_) => "get_visibility",
        Field::Inbox(_) => "inbox",
        Field::GroupGet(_) => "group_get",
        Field::Cursors(_) => "cursors",
        Field::Failure(_) => "failure",
    }
}
