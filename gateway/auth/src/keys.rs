//! Key files: the development signing key and the public verification keys.
//!
//! - `<data_dir>/keys/dev-signing.pk8`: the development private key, PKCS#8
//!   DER, mode 0600, key id [`DEV_KEY_ID`]. Made by
//!   [`load_or_create_dev_signer`] on first use.
//! - `<dir>/<key_id>.pub`: one public verification key each, 64 hex
//!   characters (either case) and an optional newline; `key_id` is a decimal
//!   `u32` without leading zeros. [`load_verifier`] loads every `*.pub` file of
//!   a directory, [`write_public_key`] writes one.
//!
//! The gateway keeps both in `<data_dir>/keys` ([`keys_dir`]), so after
//! writing the dev key's public half there the default node verifies dev
//! tokens. Other files in the directory are ignored.
//!
//! Blocking std I/O: for startup and the CLI, not for an event loop.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Signer, Verifier};

/// Key id of the development signing key.
pub const DEV_KEY_ID: u32 = 1;
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
}

impl KeyFileError {
    /// The file or directory the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. } | Self::BadName { path } | Self::BadContent { path } => path,
        }
    }
}

/// `<data_dir>/keys`, where the gateway keeps its key files.
pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
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

/// The development signer (key id [`DEV_KEY_ID`]) from
/// `<data_dir>/keys/dev-signing.pk8`, generating and saving a new key (mode
/// 0600, directory 0700 when created) if there is none yet.
///
/// Safe to race: concurrent first calls (threads or processes) all end up with
/// the one key that was saved first. An unreadable or corrupt key file is an
/// error naming it, never silently replaced: delete it to start over (every
/// dev token minted with it then stops verifying).
pub fn load_or_create_dev_signer(data_dir: &Path) -> io::Result<Signer> {
    let dir = keys_dir(data_dir);
    let path = dir.join(DEV_SIGNING_KEY_FILE);
    match fs::read(&path) {
        Ok(pkcs8) => return parse_dev_key(&path, &pkcs8),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(with_path(e, &path)),
    }
    fs::create_dir_all(data_dir).map_err(|e| with_path(e, data_dir))?;
    create_private_dir(&dir).map_err(|e| with_path(e, &dir))?;
    let (signer, pkcs8) = Signer::generate(DEV_KEY_ID).map_err(io::Error::other)?;
    // Written whole under a temporary name, then linked into place: the key
    // file never exists half-written, and linking fails if another process
    // got there first, in which case its key wins.
    let tmp = temp_path(&dir, DEV_SIGNING_KEY_FILE);
    let linked = write_new(&tmp, &pkcs8, 0o600).and_then(|()| fs::hard_link(&tmp, &path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(signer),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let pkcs8 = fs::read(&path).map_err(|e| with_path(e, &path))?;
            parse_dev_key(&path, &pkcs8)
        }
        Err(e) => Err(with_path(e, &path)),
    }
}

fn parse_dev_key(path: &Path, pkcs8: &[u8]) -> io::Result<Signer> {
    Signer::from_pkcs8(DEV_KEY_ID, pkcs8).map_err(|e| {
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
