//! The link handshake (`routing/LINKS.md` §2): HELLO, WELCOME with the
//! acceptor's proof, PROOF from the dialer. Both proofs are HMAC-SHA256 of
//! the cluster secret over a transcript of both nodes, epochs and fresh
//! nonces, so neither side sends anything a listener could replay, and
//! nothing but the handshake is read before the dialer has proved itself.

use bytes::BytesMut;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use routing::link::{self, LinkFrame, RefuseCode, NONCE_LEN, PROOF_LEN, VERSION_MAX, VERSION_MIN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{LinkConfig, LinkFailure};

/// Who is at the other end of a link, once proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerId {
    /// Its node id.
    pub node: u32,
    /// Its epoch.
    pub epoch: u64,
    /// The version both speak.
    pub version: u8,
}

const DIALER: &[u8] = b"gwlink dialer v1";
const ACCEPTOR: &[u8] = b"gwlink acceptor v1";

fn proof(key: &hmac::Key, label: &[u8], transcript: &[u8]) -> [u8; PROOF_LEN] {
    let mut context = hmac::Context::with_key(key);
    context.update(label);
    context.update(transcript);
    let mut out = [0u8; PROOF_LEN];
    out.copy_from_slice(context.sign().as_ref());
    out
}

fn verify(key: &hmac::Key, label: &[u8], transcript: &[u8], proof: &[u8; PROOF_LEN]) -> bool {
    let message = [label, transcript].concat();
    hmac::verify(key, &message, proof).is_ok()
}

fn nonce() -> Result<[u8; NONCE_LEN], LinkFailure> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| LinkFailure::Random)?;
    Ok(nonce)
}

/// The dialer's side, on a fresh connection to the node `expect`.
pub(crate) async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    input: &mut BytesMut,
    config: &LinkConfig,
    expect: u32,
) -> Result<PeerId, LinkFailure> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &config.secret);
    let (node, epoch) = (config.node, config.epoch());
    let mine = nonce()?;
    let hello =
        LinkFrame::Hello { min_version: VERSION_MIN, max_version: VERSION_MAX, node, epoch, nonce: mine };
    write_frame(stream, &hello).await?;
    let (version, peer, peer_epoch, theirs, their_proof) = match read_frame(stream, input).await? {
        LinkFrame::Welcome { version, node, epoch, nonce, proof } => (version, node, epoch, nonce, proof),
        LinkFrame::Refuse { code, reason } => return Err(LinkFailure::Refused { code, reason }),
        other => return Err(LinkFailure::Unexpected(other.kind())),
    };
    let transcript = link::transcript((node, epoch, &mine), (peer, peer_epoch, &theirs), version);
    if !verify(&key, ACCEPTOR, &transcript, &their_proof) {
        return Err(LinkFailure::BadProof);
    }
    if !(VERSION_MIN..=VERSION_MAX).contains(&version) {
        return Err(LinkFailure::Version(version));
    }
    if peer != expect {
        // The registry's address is stale: another node answers there.
        return Err(LinkFailure::WrongNode { expected: expect, found: peer });
    }
    write_frame(stream, &LinkFrame::Proof { proof: proof(&key, DIALER, &transcript) }).await?;
    Ok(PeerId { node: peer, epoch: peer_epoch, version })
}

/// The acceptor's side, on a connection just accepted.
pub(crate) async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    input: &mut BytesMut,
    config: &LinkConfig,
) -> Result<PeerId, LinkFailure> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &config.secret);
    let (peer, peer_epoch, theirs, min, max) = match read_frame(stream, input).await? {
        LinkFrame::Hello { min_version, max_version, node, epoch, nonce } => {
            (node, epoch, nonce, min_version, max_version)
        }
        other => return Err(LinkFailure::Unexpected(other.kind())),
    };
    let version = max.min(VERSION_MAX);
    if version < min.max(VERSION_MIN) {
        let reason = format!("versions {min}..={max} offered, {VERSION_MIN}..={VERSION_MAX} spoken here");
        refuse(stream, RefuseCode::Version, &reason).await;
        return Err(LinkFailure::Version(max));
    }
    let (node, epoch) = (config.node, config.epoch());
    let mine = nonce()?;
    let transcript = link::transcript((peer, peer_epoch, &theirs), (node, epoch, &mine), version);
    let welcome =
        LinkFrame::Welcome { version, node, epoch, nonce: mine, proof: proof(&key, ACCEPTOR, &transcript) };
    write_frame(stream, &welcome).await?;
    match read_frame(stream, input).await? {
        LinkFrame::Proof { proof } if verify(&key, DIALER, &transcript, &proof) => {
            Ok(PeerId { node: peer, epoch: peer_epoch, version })
        }
        LinkFrame::Proof { .. } => {
            refuse(stream, RefuseCode::Auth, "bad proof: not this cluster's secret").await;
            Err(LinkFailure::BadProof)
        }
        other => Err(LinkFailure::Unexpected(other.kind())),
    }
}

async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, code: RefuseCode, reason: &str) {
    let _ = write_frame(stream, &LinkFrame::Refuse { code: code as u8, reason: reason.to_owned() }).await;
}

/// Writes one frame.
pub(crate) async fn write_frame<S: AsyncWrite + Unpin>(
    stream: &mut S,
    frame: &LinkFrame,
) -> Result<(), LinkFailure> {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    stream.write_all(&out).await?;
    Ok(())
}

/// Reads until one whole frame is in `input`, and decodes it.
pub(crate) async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    input: &mut BytesMut,
) -> Result<LinkFrame, LinkFailure> {
    loop {
        if let Some(frame) = LinkFrame::decode(input)? {
            return Ok(frame);
        }
        input.reserve(16 << 10);
        if stream.read_buf(input).await? == 0 {
            return Err(LinkFailure::Closed);
        }
    }
}
