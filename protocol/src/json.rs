//! A JSON view of frames: field names as in SPEC.md, ids and counters as
//! numbers, bytes as lower-case hex, enums and codes by their SPEC names.
//!
//! Used by the golden vectors (`testdata/vectors.json`) and by tools that print
//! frames. A frame is `{"kind": "SEND", "fields": {...}}`.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::codes::ErrorCode;
use crate::frames::{Frame, FrameKind};
use crate::types::{
    Blob, Capabilities, ConvSeq, Conversation, DeviceId, GoAwayReason, GroupId, HttpMethod, List, MediaClass,
    MessageId, PresenceStatus, ReceiptKind, Role, Seq, Text, Timestamp, UserId, Visibility,
};
use crate::wire::Wire;

/// Conversion between a field and its JSON form.
pub trait Json: Sized {
    /// The JSON form.
    fn to_json(&self) -> Value;
    /// Parses the JSON form, with a readable reason on failure.
    fn from_json(value: &Value) -> Result<Self, String>;
}

impl Frame {
    /// `{"kind": "SEND", "fields": {...}}`.
    pub fn to_json(&self) -> Value {
        json!({ "kind": self.kind().name(), "fields": self.body_to_json() })
    }

    /// Parses the form [`Frame::to_json`] produces.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let name = value.get("kind").and_then(Value::as_str).ok_or("missing `kind`")?;
        let kind = FrameKind::from_name(name).ok_or_else(|| format!("unknown kind {name}"))?;
        Self::body_from_json(kind, value.get("fields").ok_or("missing `fields`")?)
    }
}

fn number(value: &Value) -> Result<u64, String> {
    value.as_u64().ok_or_else(|| format!("expected an unsigned number, got {value}"))
}

impl Json for u64 {
    fn to_json(&self) -> Value {
        json!(self)
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        number(value)
    }
}

impl Json for u32 {
    fn to_json(&self) -> Value {
        json!(self)
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        u32::try_from(number(value)?).map_err(|e| e.to_string())
    }
}

impl Json for u8 {
    fn to_json(&self) -> Value {
        json!(self)
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        u8::try_from(number(value)?).map_err(|e| e.to_string())
    }
}

impl Json for bool {
    fn to_json(&self) -> Value {
        json!(self)
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        value.as_bool().ok_or_else(|| format!("expected a boolean, got {value}"))
    }
}

macro_rules! json_newtype {
    ($($name:ident),+) => {$(
        impl Json for $name {
            fn to_json(&self) -> Value {
                self.0.to_json()
            }
            fn from_json(value: &Value) -> Result<Self, String> {
                Json::from_json(value).map(Self)
            }
        }
    )+};
}

json_newtype!(UserId, DeviceId, GroupId, MessageId, Seq, ConvSeq, Timestamp, Capabilities);

macro_rules! json_enum {
    ($($name:ident),+) => {$(
        impl Json for $name {
            fn to_json(&self) -> Value {
                self.name().into()
            }
            fn from_json(value: &Value) -> Result<Self, String> {
                value.as_str().and_then(Self::from_name).ok_or_else(|| format!("bad {}: {value}", stringify!($name)))
            }
        }
    )+};
}

json_enum!(PresenceStatus, Visibility, ReceiptKind, Role, GoAwayReason, MediaClass, HttpMethod);

impl Json for ErrorCode {
    fn to_json(&self) -> Value {
        self.name().map_or_else(|| json!(self.0), Value::from)
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(name) => Self::from_name(name).ok_or_else(|| format!("unknown code {name}")),
            other => u16::try_from(number(other)?).map(Self).map_err(|e| e.to_string()),
        }
    }
}

impl Json for Conversation {
    fn to_json(&self) -> Value {
        match self {
            Self::Direct(user) => json!({ "user": user.0 }),
            Self::Group(group) => json!({ "group": group.0 }),
        }
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        if let Some(user) = value.get("user") {
            return number(user).map(|id| Self::Direct(UserId(id)));
        }
        if let Some(group) = value.get("group") {
            return number(group).map(|id| Self::Group(GroupId(id)));
        }
        Err(format!("expected {{\"user\": n}} or {{\"group\": n}}, got {value}"))
    }
}

impl<const MAX: usize> Json for Blob<MAX> {
    fn to_json(&self) -> Value {
        to_hex(self.bytes()).into()
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        let text = value.as_str().ok_or("expected a hex string")?;
        Self::new(from_hex(text)?).map_err(|e| e.to_string())
    }
}

impl<const MAX: usize> Json for Text<MAX> {
    fn to_json(&self) -> Value {
        self.as_str().into()
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        Self::new(value.as_str().ok_or("expected a string")?).map_err(|e| e.to_string())
    }
}

impl<T: Wire + Json, const MAX: usize> Json for List<T, MAX> {
    fn to_json(&self) -> Value {
        Value::Array(self.iter().map(|item| item.to_json()).collect())
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        let items = value.as_array().ok_or("expected an array")?;
        let items = items.iter().map(T::from_json).collect::<Result<Vec<_>, _>>()?;
        Self::from_items(&items).map_err(|e| e.to_string())
    }
}

impl<T: Json> Json for Option<T> {
    fn to_json(&self) -> Value {
        self.as_ref().map_or(Value::Null, Json::to_json)
    }
    fn from_json(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_json(other).map(Some),
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex; ASCII white space between digit pairs is ignored.
pub fn from_hex(text: &str) -> Result<Bytes, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            u8::from_str_radix(pair, 16).map_err(|e| format!("bad hex {pair:?}: {e}"))
        })
        .collect::<Result<Vec<u8>, String>>()
        .map(Bytes::from)
}
