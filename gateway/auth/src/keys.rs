//! Key files: the development signing key and the public verification keys.
//!
//! - `<data_dir>/keys/dev-signing.pk8`: the development private key, PKCS#8
//!   DER, mode 0600. Made by [`load_or_create_dev_signer`] on first use and
//!   never rewritten. Its key id is derived from its public key
//!   ([`dev_key_id`]), so tokens of another dev key name an id this node does
//!   not hold (AUTH_UNKNOWN_KEY) instead of failing their signature check.
//! - `<dir>/<key_id>.pub`: one public verification key each, 64 hex
//!   characters (either case) and an optional newline; `key_id` is a decimal
//!   `u32` without leading zeros. [`load_verifier`] loads every `*.pub` file of
//!   a directory, [`write_public_key`] writes one.
//!
//! A node that uses the dev key holds its public half in memory
//! ([`load_node_keys`]): it is never written as a `.pub` file, so it cannot
//! leak into a directory of production keys. Other files in a keys directory
//! are ignored.
//!
//! Blocking std I/O: for startup and the CLI, not for an event loop.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Signer, SignerError, Verifier};

/// Every development key id has this bit set ([`dev_key_id`]). Ids below it
/// are for keys an operator names; a dev id can still equal an operator's
/// `.pub` id, which [`load_node_keys`] refuses.
pub const DEV_KEY_ID_BIT: u32 = 1 << 31;
/// File name of the development signing key, in [`keys_dir`].
pub const DEV_SIGNING_KEY_FILE: &str = "dev-signing.pk8";

/// Why a directory of public keys could not be loaded. Every variant names
/// the file (or directory) at fault.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading the directory or a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// A `*.pub` file whose name is not `<key_id>.pub`.
    #[error("{}: a public key file must be named <key_id>.pub, key_id a decimal u32 without leading zeros", path.display())]
    BadName {
        /// The file.
        path: PathBuf,
    },
    /// A `*.pub` file that does not hold exactly 64 hex characters.
    #[error("{}: expected a 32-byte Ed25519 public key as 64 hex characters and an optional newline", path.display())]
    BadContent {
        /// The file.
        path: PathBuf,
    },
    /// A `*.pub` file whose key id is the development key's, with another
    /// key: a token of that id could not say which key signed it.
    #[error("{}: key id {key_id} is also the id of the development key ({}), which is a different key; two keys cannot share an id", path.display(), dev_key.display())]
    KeyIdCollision {
        /// The `.pub` file.
        path: PathBuf,
        /// The id both keys claim.
        key_id: u32,
        /// The development key's file.
        dev_key: PathBuf,
    },
}

impl KeyFileError {
    /// The file or directory the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. }
            | Self::BadName { path }
            | Self::BadContent { path }
            | Self::KeyIdCollision { path, .. } => path,
        }
    }
}

/// `<data_dir>/keys`, where the gateway keeps its key files.
pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// `<data_dir>/keys/dev-signing.pk8`, the development signing key.
pub fn dev_key_path(data_dir: &Path) -> PathBuf {
    keys_dir(data_dir).join(DEV_SIGNING_KEY_FILE)
}

/// The key id of the development key whose public half is `public_key`: the
/// first four bytes of its SHA-256, with [`DEV_KEY_ID_BIT`] set. Two dev keys
/// get the same id with probability 2^-31.
pub fn dev_key_id(public_key: &[u8; 32]) -> u32 {
    let digest = ring::digest::digest(&ring::digest::SHA256, public_key);
    let first = digest.as_ref().first_chunk::<4>().copied().unwrap_or_default();
    u32::from_be_bytes(first) | DEV_KEY_ID_BIT
}

/// A development signer from its PKCS#8 document, with its derived key id
/// ([`dev_key_id`]): how `gateway token`, the client's chat example and the
/// flood tool load `dev-signing.pk8`.
pub fn dev_signer_from_pkcs8(pkcs8: &[u8]) -> Result<Signer, SignerError> {
    let key_id_unknown = Signer::from_pkcs8(0, pkcs8)?;
    Signer::from_pkcs8(dev_key_id(&key_id_unknown.public_key()), pkcs8)
}

/// `<dir>/<key_id>.pub`.
pub fn public_key_path(dir: &Path, key_id: u32) -> PathBuf {
    dir.join(format!("{key_id}.pub"))
}

/// Lowercase hex of a public key (64 characters), as in `.pub` files.
pub fn public_key_to_hex(public_key: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in public_key {
        for nibble in [byte >> 4, byte & 0x0f] {
            out.push(char::from(HEX.get(usize::from(nibble)).copied().unwrap_or(b'0')));
        }
    }
    out
}

/// Parses 64 hex characters (either case, nothing else) into a public key.
pub fn parse_public_key_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (dst, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *dst = (hex_value(*hi)? << 4) | hex_value(*lo)?;
    }
    Some(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The key id a `<key_id>.pub` file name stands for, if the name is canonical.
fn key_id_of(file_name: &str) -> Option<u32> {
    let digits = file_name.strip_suffix(".pub")?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if canonical {
        digits.parse().ok()
    } else {
        None
    }
}

/// Parses the content of a `.pub` file: 64 hex characters, then nothing, `\n`
/// or `\r\n`.
fn parse_public_key_file(content: &[u8]) -> Option<[u8; 32]> {
    let hex = content.strip_suffix(b"\r\n").or_else(|| content.strip_suffix(b"\n")).unwrap_or(content);
    parse_public_key_hex(std::str::from_utf8(hex).ok()?)
}

/// A verifier holding every `<key_id>.pub` key in `dir` (default leeway).
///
/// Files not ending in `.pub` are ignored. A `.pub` file that cannot be read,
/// is misnamed or holds anything but one key is an error naming it: a key is
/// never skipped silently. An empty directory gives an empty verifier (which
/// refuses every token); whether that is fatal is the caller's call.
pub fn load_verifier(dir: &Path) -> Result<Verifier, KeyFileError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| KeyFileError::Io { path, source }
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.extension().is_some_and(|ext| ext == "pub") {
            paths.push(path);
        }
    }
    // Sorted, so that with several bad files the same one is reported each time.
    paths.sort();
    let mut verifier = Verifier::new();
    for path in paths {
        let Some(key_id) = path.file_name().and_then(|name| name.to_str()).and_then(key_id_of) else {
            return Err(KeyFileError::BadName { path });
        };
        let content = fs::read(&path).map_err(io_err(&path))?;
        let Some(public_key) = parse_public_key_file(&content) else {
            return Err(KeyFileError::BadContent { path });
        };
        verifier.add_key(key_id, public_key);
    }
    Ok(verifier)
}

/// A node's verification keys: every `<key_id>.pub` in `dir`
/// ([`load_verifier`]) and, with `dev`, the development signer's public half
/// (held in memory only; `dev_key` is its file, for messages).
///
/// A `.pub` file with the dev key's id and another key is a
/// [`KeyFileError::KeyIdCollision`]; one with the same key is harmless (an
/// operator installed it).
pub fn load_node_keys(dir: &Path, dev: Option<(&Signer, &Path)>) -> Result<Verifier, KeyFileError> {
    let mut verifier = load_verifier(dir)?;
    if let Some((signer, dev_key)) = dev {
        let key_id = signer.key_id();
        match verifier.public_key(key_id) {
            Some(held) if held != signer.public_key() => {
                return Err(KeyFileError::KeyIdCollision {
                    path: public_key_path(dir, key_id),
                    key_id,
                    dev_key: dev_key.to_path_buf(),
                })
            }
            _ => verifier.add_key(key_id, signer.public_key()),
        }
    }
    Ok(verifier)
}

/// Writes `public_key` to `<dir>/<key_id>.pub` (lowercase hex and a newline),
/// creating `dir` if needed and replacing the file atomically. Returns the
/// file's path.
pub fn write_public_key(dir: &Path, key_id: u32, public_key: &[u8; 32]) -> io::Result<PathBuf> {
    fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
    let path = public_key_path(dir, key_id);
    let tmp = temp_path(dir, &format!("{key_id}.pub"));
    let content = format!("{}\n", public_key_to_hex(public_key));
    let written = write_new(&tmp, content.as_bytes(), 0o644).and_then(|()| fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(with_path(e, &path));
    }
    Ok(path)
}

/// The development signer (key id [`dev_key_id`]) from
/// `<data_dir>/keys/dev-signing.pk8` ([`dev_key_path`]), generating and
/// saving a new key (mode 0600, directory 0700 when created) if there is none
/// yet. An existing key is only read: this works on a full disk or a
/// read-only data directory.
///
/// Safe to race: concurrent first calls (threads or processes) all end up with
/// the one key that was saved first. An unreadable or corrupt key file is an
/// error naming it, never silently replaced: delete it to start over (every
/// dev token minted with it then stops verifying).
pub fn load_or_create_dev_signer(data_dir: &Path) -> io::Result<Signer> {
    let dir = keys_dir(data_dir);
    let path = dev_key_path(data_dir);
    match fs::read(&path) {
        Ok(pkcs8) => return parse_dev_key(&path, &pkcs8),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(with_path(e, &path)),
    }
    fs::create_dir_all(data_dir).map_err(|e| with_path(e, data_dir))?;
    create_private_dir(&dir).map_err(|e| with_path(e, &dir))?;
    let (_, pkcs8) = Signer::generate(0).map_err(io::Error::other)?;
    // Written whole under a temporary name, then linked into place: the key
    // file never exists half-written, and linking fails if another process
    // got there first, in which case its key wins.
    let tmp = temp_path(&dir, DEV_SIGNING_KEY_FILE);
    let linked = write_new(&tmp, &pkcs8, 0o600).and_then(|()| fs::hard_link(&tmp, &path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => parse_dev_key(&path, &pkcs8),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let pkcs8 = fs::read(&path).map_err(|e| with_path(e, &path))?;
            parse_dev_key(&path, &pkcs8)
        }
        Err(e) => Err(with_path(e, &path)),
    }
}

fn parse_dev_key(path: &Path, pkcs8: &[u8]) -> io::Result<Signer> {
    dev_signer_from_pkcs8(pkcs8).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e} (delete the file to generate a new dev key)", path.display()),
        )
    })
}

/// The same error with the path in its message.
fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// A hidden temporary name next to `name` in `dir`, unique in this process and
/// across processes.
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Creates `path` (which must not exist) with `mode` on Unix, writes
/// `content` and syncs it.
fn write_new(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

/// Creates `dir` (whose parent exists) with mode 0700 on Unix, unless it
/// exists already (then it is left as it is).
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}
