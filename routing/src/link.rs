//! The link protocol between gateway nodes (`routing/LINKS.md` is the
//! contract): the frames, their encoding into a caller's buffer and their
//! decoding from a byte stream. Sans IO: the link driver (`routing-links`)
//! owns the sockets, the handshake's MACs and the credit.
//!
//! A frame is `kind (1 byte) · body length (varint) · body`, the shape of
//! the client protocol's frames; every integer is a canonical LEB128 varint
//! and every read is bounds-checked ([`protocol::Reader`]): no input makes
//! the decoder panic (fuzz target `routing/fuzz`, `link_decode`).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use protocol::{put_varint, read_varint, varint_len, DecodeError, DeviceId, Reader, Seq, UserId};

/// The link protocol versions this code speaks.
pub const VERSION_MIN: u8 = 1;
/// See [`VERSION_MIN`].
pub const VERSION_MAX: u8 = 1;
/// First bytes of a HELLO body: refuses a stray client at once.
pub const MAGIC: [u8; 6] = *b"GWLINK";
/// Largest frame body. A LIVE with a full 1,024-member group on one node
/// (a few devices each) and a 64 KiB payload fits many times over.
pub const MAX_BODY: usize = 1 << 20;
/// Most recipients in one LIVE or FRAME (the sender splits beyond).
pub const MAX_RECIPIENTS: usize = 16_384;
/// Bytes of a handshake nonce.
pub const NONCE_LEN: usize = 16;
/// Bytes of a handshake proof (HMAC-SHA256).
pub const PROOF_LEN: usize = 32;
/// Longest REFUSE reason.
pub const MAX_REASON: usize = 256;

/// Why a link's input is refused. The link is closed: a peer that sends a
/// malformed frame is a bug or an attacker, never something to resync with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The first byte of a frame is not a defined kind.
    #[error("link frame kind 0x{0:02x} is not defined")]
    UnknownKind(u8),
    /// A frame body is longer than [`MAX_BODY`].
    #[error("link frame body of {0} bytes exceeds {MAX_BODY}")]
    TooLarge(u64),
    /// A HELLO does not start with [`MAGIC`].
    #[error("not a gateway link (bad magic)")]
    BadMagic,
    /// More recipients than [`MAX_RECIPIENTS`].
    #[error("{0} recipients in one frame exceed {MAX_RECIPIENTS}")]
    TooManyRecipients(u64),
    /// A field could not be read.
    #[error("malformed link frame: {0}")]
    Malformed(#[from] DecodeError),
}

/// A DELIVER's recipient on the receiving node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient {
    /// The user.
    pub user: UserId,
    /// Its device.
    pub device: DeviceId,
    /// The entry's seq in that device's inbox.
    pub seq: Seq,
}

/// A user whose devices on the receiving node get a FRAME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserTarget {
    /// The user.
    pub user: UserId,
    /// A device that must not get it (the one that caused it), if any.
    pub except: Option<DeviceId>,
}

/// How a FRAME is queued at its sessions (the client protocol's outbound
/// classes: ephemeral frames are dropped first under pressure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameClass {
    /// Control frames and receipts.
    Live = 1,
    /// Presence and typing.
    Ephemeral = 2,
}

/// One link frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkFrame {
    /// Dialer → acceptor, first: who is calling and which versions it speaks.
    Hello {
        /// Lowest version the dialer speaks.
        min_version: u8,
        /// Highest.
        max_version: u8,
        /// The dialer's node id.
        node: u32,
        /// The dialer's epoch.
        epoch: u64,
        /// Fresh random bytes for this handshake.
        nonce: [u8; NONCE_LEN],
    },
    /// Acceptor → dialer: the version chosen and the acceptor's proof that
    /// it knows the cluster secret.
    Welcome {
        /// Chosen version.
        version: u8,
        /// The acceptor's node id.
        node: u32,
        /// The acceptor's epoch.
        epoch: u64,
        /// Fresh random bytes.
        nonce: [u8; NONCE_LEN],
        /// HMAC-SHA256(secret, "acceptor" · transcript).
        proof: [u8; PROOF_LEN],
    },
    /// Dialer → acceptor: the dialer's proof. Nothing else is read before it.
    Proof {
        /// HMAC-SHA256(secret, "dialer" · transcript).
        proof: [u8; PROOF_LEN],
    },
    /// Either side, then it closes: why the link is refused.
    Refuse {
        /// [`RefuseCode`] as a byte.
        code: u8,
        /// For the operator's log.
        reason: String,
    },
    /// Acceptor → dialer: this many more body bytes may be sent.
    Credit {
        /// Bytes granted.
        bytes: u64,
    },
    /// Live inbox entries of one stored message, for devices on the
    /// receiving node: the DELIVER body encoded once, without its seq.
    Live {
        /// Already forwarded once by a node that no longer held a device:
        /// not forwarded again.
        forwarded: bool,
        /// The DELIVER body after its seq field.
        tail: Bytes,
        /// Who gets it, each with its own seq.
        recipients: Vec<Recipient>,
    },
    /// A server-to-client frame (receipt, presence, typing, prekey note)
    /// for every device of some users on the receiving node.
    Frame {
        /// How it is queued.
        class: FrameClass,
        /// The frame, encoded (kind, length, body).
        frame: Bytes,
        /// Who gets it.
        users: Vec<UserTarget>,
    },
    /// A PRESENCE frame for the sessions of the receiving node that watch
    /// the listed users (the users' presence changed where they are).
    Watchers {
        /// The frame, encoded (kind, length, body).
        frame: Bytes,
        /// The users watched.
        users: Vec<UserId>,
    },
    /// The sender has sessions watching these users, which have devices on
    /// the receiving node: it answers with WATCHERS (their presence now).
    PresenceQuery {
        /// The users.
        users: Vec<UserId>,
    },
    /// A newer connection of `device` registered elsewhere: close the
    /// session `session` of the receiving node's epoch `epoch` with 4007.
    Replace {
        /// The user.
        user: UserId,
        /// The device.
        device: DeviceId,
        /// The receiving node's epoch that placed the old session.
        epoch: u64,
        /// That node's id for the old session.
        session: u64,
    },
}

/// Why a link was refused ([`LinkFrame::Refuse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseCode {
    /// No common version.
    Version = 1,
    /// The proof does not match the cluster secret.
    Auth = 2,
    /// The handshake broke the protocol or took too long.
    Protocol = 3,
}

const HELLO: u8 = 0x01;
const WELCOME: u8 = 0x02;
const PROOF: u8 = 0x03;
const REFUSE: u8 = 0x04;
const CREDIT: u8 = 0x05;
const LIVE: u8 = 0x10;
const FRAME: u8 = 0x11;
const REPLACE: u8 = 0x12;
const WATCHERS: u8 = 0x13;
const PRESENCE_QUERY: u8 = 0x14;

impl LinkFrame {
    /// The frame's kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Self::Hello { .. } => HELLO,
            Self::Welcome { .. } => WELCOME,
            Self::Proof { .. } => PROOF,
            Self::Refuse { .. } => REFUSE,
            Self::Credit { .. } => CREDIT,
            Self::Live { .. } => LIVE,
            Self::Frame { .. } => FRAME,
            Self::Replace { .. } => REPLACE,
            Self::Watchers { .. } => WATCHERS,
            Self::PresenceQuery { .. } => PRESENCE_QUERY,
        }
    }

    /// Whether the frame carries deliveries (counted against the credit).
    pub fn is_data(&self) -> bool {
        matches!(
            self,
            Self::Live { .. }
                | Self::Frame { .. }
                | Self::Replace { .. }
                | Self::Watchers { .. }
                | Self::PresenceQuery { .. }
        )
    }

    /// Appends the frame to `out`; returns the bytes written.
    pub fn encode(&self, out: &mut BytesMut) -> usize {
        let start = out.len();
        let mut body = BytesMut::with_capacity(self.body_len_hint());
        self.put_body(&mut body);
        out.put_u8(self.kind());
        put_varint(out, body.len() as u64);
        out.extend_from_slice(&body);
        out.len() - start
    }

    fn body_len_hint(&self) -> usize {
        match self {
            Self::Live { tail, recipients, .. } => tail.len() + 8 + recipients.len() * 16,
            Self::Frame { frame, users, .. } => frame.len() + 8 + users.len() * 12,
            _ => 64,
        }
    }

    fn put_body(&self, body: &mut BytesMut) {
        match self {
            Self::Hello { min_version, max_version, node, epoch, nonce } => {
                body.put_slice(&MAGIC);
                body.put_u8(*min_version);
                body.put_u8(*max_version);
                put_varint(body, u64::from(*node));
                put_varint(body, *epoch);
                body.put_slice(nonce);
            }
            Self::Welcome { version, node, epoch, nonce, proof } => {
                body.put_u8(*version);
                put_varint(body, u64::from(*node));
                put_varint(body, *epoch);
                body.put_slice(nonce);
                body.put_slice(proof);
            }
            Self::Proof { proof } => body.put_slice(proof),
            Self::Refuse { code, reason } => {
                body.put_u8(*code);
                let reason = truncate(reason, MAX_REASON);
                put_varint(body, reason.len() as u64);
                body.put_slice(reason.as_bytes());
            }
            Self::Credit { bytes } => put_varint(body, *bytes),
            Self::Live { forwarded, tail, recipients } => {
                body.put_u8(u8::from(*forwarded));
                put_varint(body, tail.len() as u64);
                body.put_slice(tail);
                put_varint(body, recipients.len() as u64);
                for r in recipients {
                    put_varint(body, r.user.0);
                    put_varint(body, u64::from(r.device.0));
                    put_varint(body, r.seq.0);
                }
            }
            Self::Frame { class, frame, users } => {
                body.put_u8(*class as u8);
                put_varint(body, frame.len() as u64);
                body.put_slice(frame);
                put_varint(body, users.len() as u64);
                for target in users {
                    put_varint(body, target.user.0);
                    // 0 = no exception; a device d is d + 1.
                    put_varint(body, target.except.map_or(0, |d| u64::from(d.0) + 1));
                }
            }
            Self::Replace { user, device, epoch, session } => {
                put_varint(body, user.0);
                put_varint(body, u64::from(device.0));
                put_varint(body, *epoch);
                put_varint(body, *session);
            }
            Self::Watchers { frame, users } => {
                put_varint(body, frame.len() as u64);
                body.put_slice(frame);
                put_users(body, users);
            }
            Self::PresenceQuery { users } => put_users(body, users),
        }
    }

    /// Splits one frame off the front of `input`: `Ok(None)` while it is
    /// incomplete (read more), an error when it can never be valid.
    pub fn decode(input: &mut BytesMut) -> Result<Option<Self>, LinkError> {
        let Some(&kind) = input.first() else { return Ok(None) };
        if !matches!(
            kind,
            HELLO | WELCOME | PROOF | REFUSE | CREDIT | LIVE | FRAME | REPLACE | WATCHERS | PRESENCE_QUERY
        ) {
            return Err(LinkError::UnknownKind(kind));
        }
        let after_kind = input.get(1..).unwrap_or_default();
        let Some((len, len_bytes)) = read_varint(after_kind, "length")? else { return Ok(None) };
        if len > MAX_BODY as u64 {
            return Err(LinkError::TooLarge(len));
        }
        // `len <= MAX_BODY`, a usize.
        let total = 1 + len_bytes + len as usize;
        if input.len() < total {
            return Ok(None);
        }
        let mut frame = input.split_to(total).freeze();
        frame.advance(1 + len_bytes);
        let mut body = Reader::new(frame);
        let decoded = Self::read_body(kind, &mut body)?;
        body.finish("link frame")?;
        Ok(Some(decoded))
    }

    fn read_body(kind: u8, body: &mut Reader) -> Result<Self, LinkError> {
        Ok(match kind {
            HELLO => {
                if body.bytes(MAGIC.len(), "magic")? != MAGIC[..] {
                    return Err(LinkError::BadMagic);
                }
                Self::Hello {
                    min_version: body.u8("min_version")?,
                    max_version: body.u8("max_version")?,
                    node: u32_field(body, "node")?,
                    epoch: body.varint("epoch")?,
                    nonce: array(body, "nonce")?,
                }
            }
            WELCOME => Self::Welcome {
                version: body.u8("version")?,
                node: u32_field(body, "node")?,
                epoch: body.varint("epoch")?,
                nonce: array(body, "nonce")?,
                proof: array(body, "proof")?,
            },
            PROOF => Self::Proof { proof: array(body, "proof")? },
            REFUSE => {
                let code = body.u8("code")?;
                let reason = body.len_prefixed(MAX_REASON, "reason")?;
                // Invalid UTF-8 becomes U+FFFD (three bytes each), which can
                // take the text past the bound: cut as the encoder does, so
                // that the frame encodes back to what was decoded.
                let reason = String::from_utf8_lossy(&reason);
                Self::Refuse { code, reason: truncate(&reason, MAX_REASON).to_owned() }
            }
            CREDIT => Self::Credit { bytes: body.varint("bytes")? },
            LIVE => {
                let forwarded = bool_field(body, "forwarded")?;
                let tail = body.len_prefixed(MAX_BODY, "tail")?;
                let count = count(body)?;
                let mut recipients = Vec::with_capacity(count);
                for _ in 0..count {
                    recipients.push(Recipient {
                        user: UserId(body.varint("user")?),
                        device: DeviceId(u32_field(body, "device")?),
                        seq: Seq(body.varint("seq")?),
                    });
                }
                Self::Live { forwarded, tail, recipients }
            }
            FRAME => {
                let class = match body.u8("class")? {
                    1 => FrameClass::Live,
                    2 => FrameClass::Ephemeral,
                    other => {
                        return Err(
                            DecodeError::InvalidValue { field: "class", value: u64::from(other) }.into()
                        )
                    }
                };
                let frame = body.len_prefixed(MAX_BODY, "frame")?;
                let count = count(body)?;
                let mut users = Vec::with_capacity(count);
                for _ in 0..count {
                    let user = UserId(body.varint("user")?);
                    let except = match body.varint("except")? {
                        0 => None,
                        d => Some(DeviceId(u32::try_from(d - 1).map_err(|_| out_of_range("except", d))?)),
                    };
                    users.push(UserTarget { user, except });
                }
                Self::Frame { class, frame, users }
            }
            REPLACE => Self::Replace {
                user: UserId(body.varint("user")?),
                device: DeviceId(u32_field(body, "device")?),
                epoch: body.varint("epoch")?,
                session: body.varint("session")?,
            },
            WATCHERS => {
                let frame = body.len_prefixed(MAX_BODY, "frame")?;
                Self::Watchers { frame, users: read_users(body)? }
            }
            PRESENCE_QUERY => Self::PresenceQuery { users: read_users(body)? },
            other => return Err(LinkError::UnknownKind(other)),
        })
    }
}

/// The bytes both proofs sign: the HELLO and WELCOME fields that bind the
/// handshake (both nodes, both epochs, both nonces, the version), so a proof
/// cannot be replayed on another handshake.
pub fn transcript(
    dialer: (u32, u64, &[u8; NONCE_LEN]),
    acceptor: (u32, u64, &[u8; NONCE_LEN]),
    version: u8,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 * (4 + 8 + NONCE_LEN) + 1);
    for (node, epoch, nonce) in [dialer, acceptor] {
        out.extend_from_slice(&node.to_be_bytes());
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(nonce);
    }
    out.push(version);
    out
}

/// Whether `input` starts with a whole frame, judged by its header alone
/// (a malformed header counts as whole: decoding it reports the error).
pub fn starts_with_whole_frame(input: &[u8]) -> bool {
    let Some(after_kind) = input.get(1..) else { return false };
    match read_varint(after_kind, "length") {
        // Over MAX_BODY: decoding it reports the error.
        Ok(Some((len, _))) if len > MAX_BODY as u64 => true,
        // `len <= MAX_BODY`, a usize.
        Ok(Some((len, len_bytes))) => input.len() >= 1 + len_bytes + len as usize,
        Ok(None) => false,
        Err(_) => true,
    }
}

/// The bytes a frame takes on the wire.
pub fn wire_len(body_len: usize) -> usize {
    1 + varint_len(body_len as u64) + body_len
}

fn put_users(body: &mut BytesMut, users: &[UserId]) {
    put_varint(body, users.len() as u64);
    for user in users {
        put_varint(body, user.0);
    }
}

fn read_users(body: &mut Reader) -> Result<Vec<UserId>, LinkError> {
    let count = count(body)?;
    let mut users = Vec::with_capacity(count);
    for _ in 0..count {
        users.push(UserId(body.varint("user")?));
    }
    Ok(users)
}

fn count(body: &mut Reader) -> Result<usize, LinkError> {
    let count = body.varint("count")?;
    if count > MAX_RECIPIENTS as u64 {
        return Err(LinkError::TooManyRecipients(count));
    }
    // Each recipient takes at least 2 bytes: a count above what is left
    // is refused before anything is reserved for it.
    if count > body.remaining() as u64 {
        return Err(DecodeError::Truncated { field: "recipients" }.into());
    }
    Ok(count as usize)
}

fn u32_field(body: &mut Reader, field: &'static str) -> Result<u32, LinkError> {
    let value = body.varint(field)?;
    u32::try_from(value).map_err(|_| out_of_range(field, value))
}

fn bool_field(body: &mut Reader, field: &'static str) -> Result<bool, LinkError> {
    match body.u8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(out_of_range(field, u64::from(other))),
    }
}

fn out_of_range(field: &'static str, value: u64) -> LinkError {
    DecodeError::InvalidValue { field, value }.into()
}

fn array<const N: usize>(body: &mut Reader, field: &'static str) -> Result<[u8; N], LinkError> {
    let bytes = body.bytes(N, field)?;
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes);
    Ok(out)
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<LinkFrame> {
        vec![
            LinkFrame::Hello { min_version: 1, max_version: 1, node: 7, epoch: 300, nonce: [9; NONCE_LEN] },
            LinkFrame::Welcome {
                version: 1,
                node: 2,
                epoch: 1,
                nonce: [1; NONCE_LEN],
                proof: [2; PROOF_LEN],
            },
            LinkFrame::Proof { proof: [3; PROOF_LEN] },
            LinkFrame::Refuse { code: RefuseCode::Auth as u8, reason: "bad proof".into() },
            LinkFrame::Credit { bytes: 4 << 20 },
            LinkFrame::Live {
                forwarded: true,
                tail: Bytes::from_static(b"\x01\x02\x03"),
                recipients: vec![
                    Recipient { user: UserId(1), device: DeviceId(1), seq: Seq(10) },
                    Recipient { user: UserId(u64::MAX), device: DeviceId(u32::MAX), seq: Seq(0) },
                ],
            },
            LinkFrame::Frame {
                class: FrameClass::Ephemeral,
                frame: Bytes::from_static(b"\x50\x00"),
                users: vec![
                    UserTarget { user: UserId(5), except: None },
                    UserTarget { user: UserId(6), except: Some(DeviceId(0)) },
                    UserTarget { user: UserId(7), except: Some(DeviceId(u32::MAX)) },
                ],
            },
            LinkFrame::Replace { user: UserId(3), device: DeviceId(2), epoch: 4, session: (1 << 48) | 5 },
            LinkFrame::Watchers {
                frame: Bytes::from_static(b"\x51\x01\x00"),
                users: vec![UserId(8), UserId(9)],
            },
            LinkFrame::PresenceQuery { users: vec![UserId(8)] },
        ]
    }

    #[test]
    fn a_whole_frame_is_told_from_a_part_by_its_header() {
        let mut wire = BytesMut::new();
        LinkFrame::Credit { bytes: 1 << 30 }.encode(&mut wire);
        let len = wire.len();
        LinkFrame::Credit { bytes: 7 }.encode(&mut wire);
        for cut in 0..len {
            assert!(!starts_with_whole_frame(&wire[..cut]), "{cut} of {len} bytes");
        }
        assert!(starts_with_whole_frame(&wire[..len]));
        assert!(starts_with_whole_frame(&wire[len..]), "the next one");
        // A length over the limit is "whole": decoding it fails at once.
        let mut big = BytesMut::from(&[LIVE][..]);
        put_varint(&mut big, MAX_BODY as u64 + 1);
        assert!(starts_with_whole_frame(&big));
    }

    #[test]
    fn every_frame_round_trips_and_arrives_in_pieces() {
        let mut wire = BytesMut::new();
        for frame in samples() {
            let before = wire.len();
            let written = frame.encode(&mut wire);
            assert_eq!(written, wire.len() - before);
        }
        let all = wire.clone().freeze();
        // Fed one byte at a time: nothing decodes early, everything in order.
        let mut input = BytesMut::new();
        let mut out = Vec::new();
        for byte in all.iter() {
            input.put_u8(*byte);
            while let Some(frame) = LinkFrame::decode(&mut input).unwrap() {
                out.push(frame);
            }
        }
        assert_eq!(out, samples());
        assert!(input.is_empty());
    }

    #[test]
    fn a_refuse_reason_of_invalid_utf8_decodes_to_what_encodes_back() {
        // 256 bytes that are not UTF-8 (the fuzzer's find): each becomes a
        // three-byte U+FFFD, cut back to the bound on a char boundary.
        let mut wire = BytesMut::new();
        wire.put_u8(REFUSE);
        put_varint(&mut wire, 1 + 2 + MAX_REASON as u64);
        wire.put_u8(9);
        put_varint(&mut wire, MAX_REASON as u64);
        wire.put_slice(&[0xbd; MAX_REASON]);
        let frame = LinkFrame::decode(&mut wire).unwrap().unwrap();
        let LinkFrame::Refuse { reason, .. } = &frame else { panic!("{frame:?}") };
        assert!(reason.len() <= MAX_REASON && reason.chars().all(|c| c == '\u{fffd}'), "{reason:?}");
        let mut again = BytesMut::new();
        frame.encode(&mut again);
        assert_eq!(LinkFrame::decode(&mut again).unwrap(), Some(frame));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        type Expected = fn(&LinkError) -> bool;
        let cases: Vec<(&[u8], Expected)> = vec![
            (b"\x7f\x00", |e| matches!(e, LinkError::UnknownKind(0x7f))),
            (b"GET / HTTP/1.1\r\n", |e| matches!(e, LinkError::UnknownKind(b'G'))),
            (b"\x10\x80\x80\xc0\x01", |e| matches!(e, LinkError::TooLarge(_))),
            (b"\x01\x06NOTLNK", |e| matches!(e, LinkError::BadMagic)),
            // LIVE claiming a million recipients in 4 bytes.
            (b"\x10\x06\x00\x00\x80\x89\x7a\x00", |e| matches!(e, LinkError::TooManyRecipients(_))),
            (b"\x10\x04\x00\x00\x05\x00", |e| matches!(e, LinkError::Malformed(_))),
            (b"\x11\x03\x03\x00\x00", |e| matches!(e, LinkError::Malformed(_))),
            (b"\x05\x02\x01\x00", |e| matches!(e, LinkError::Malformed(DecodeError::TrailingBytes { .. }))),
        ];
        for (bytes, expected) in cases {
            let err = LinkFrame::decode(&mut BytesMut::from(bytes)).expect_err("must be refused");
            assert!(expected(&err), "{bytes:?}: {err:?}");
        }
    }

    #[test]
    fn the_transcript_binds_both_sides_and_the_version() {
        let a = transcript((1, 1, &[0; NONCE_LEN]), (2, 1, &[1; NONCE_LEN]), 1);
        assert_ne!(a, transcript((2, 1, &[1; NONCE_LEN]), (1, 1, &[0; NONCE_LEN]), 1));
        assert_ne!(a, transcript((1, 1, &[0; NONCE_LEN]), (2, 1, &[1; NONCE_LEN]), 2));
        assert_ne!(a, transcript((1, 2, &[0; NONCE_LEN]), (2, 1, &[1; NONCE_LEN]), 1));
    }
}
