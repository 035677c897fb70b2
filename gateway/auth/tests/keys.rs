//! Key files: the development signing key and `<key_id>.pub` verification keys.

// Test helpers may unwrap and index: a panic there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use gateway_auth::keys::{
    dev_key_id, dev_key_path, dev_signer_from_pkcs8, keys_dir, load_node_keys, load_or_create_dev_signer,
    load_verifier, parse_public_key_hex, public_key_path, public_key_to_hex, write_public_key, KeyFileError,
    DEV_KEY_ID_BIT, DEV_SIGNING_KEY_FILE,
};
use gateway_auth::Signer;
use protocol::{DeviceId, UserId};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("gateway-auth-test-{}-{name}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const KEY_A: [u8; 32] = [0xab; 32];

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn dev_signer_is_created_once_then_loaded_unchanged() {
    let data = TempDir::new("dev-stable");
    let key_file = data.path().join("keys").join(DEV_SIGNING_KEY_FILE);
    assert!(!key_file.exists());

    let first = load_or_create_dev_signer(data.path()).unwrap();
    assert_eq!(first.key_id(), dev_key_id(&first.public_key()));
    assert_eq!(key_file, dev_key_path(data.path()));
    let bytes = fs::read(&key_file).unwrap();
    let loaded = dev_signer_from_pkcs8(&bytes).unwrap();
    assert_eq!((loaded.key_id(), loaded.public_key()), (first.key_id(), first.public_key()));

    for _ in 0..3 {
        let again = load_or_create_dev_signer(data.path()).unwrap();
        assert_eq!(again.public_key(), first.public_key());
        assert_eq!(again.key_id(), first.key_id());
    }
    assert_eq!(fs::read(&key_file).unwrap(), bytes, "the key file is never rewritten");
    // No temporary files are left behind.
    let names: Vec<_> =
        fs::read_dir(data.path().join("keys")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [DEV_SIGNING_KEY_FILE]);
}

#[cfg(unix)]
#[test]
fn dev_signing_key_file_is_private() {
    let data = TempDir::new("dev-mode");
    load_or_create_dev_signer(data.path()).unwrap();
    assert_eq!(mode(&data.path().join("keys").join(DEV_SIGNING_KEY_FILE)), 0o600);
    assert_eq!(mode(&data.path().join("keys")), 0o700);
}

#[test]
fn dev_signer_creates_a_missing_data_dir() {
    let parent = TempDir::new("dev-nested");
    let data = parent.path().join("a").join("b");
    let signer = load_or_create_dev_signer(&data).unwrap();
    assert_eq!(load_or_create_dev_signer(&data).unwrap().public_key(), signer.public_key());
}

#[test]
fn concurrent_first_starts_agree_on_one_key() {
    let data = TempDir::new("dev-race");
    let path = data.path().to_path_buf();
    let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..6).map(|_| s.spawn(|| load_or_create_dev_signer(&path).unwrap().public_key())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let saved = load_or_create_dev_signer(data.path()).unwrap().public_key();
    assert!(keys.iter().all(|k| *k == saved), "every caller got the saved key");
}

#[test]
fn corrupt_dev_key_is_an_error_naming_the_file_and_is_kept() {
    let data = TempDir::new("dev-corrupt");
    let dir = keys_dir(data.path());
    fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join(DEV_SIGNING_KEY_FILE);
    fs::write(&key_file, b"not a key").unwrap();
    let err = load_or_create_dev_signer(data.path()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains(&key_file.display().to_string()), "{err}");
    assert_eq!(fs::read(&key_file).unwrap(), b"not a key", "never replaced silently");
}

#[test]
fn dev_setup_verifies_dev_tokens() {
    // What the gateway does on start, then what `gateway token` does.
    let data = TempDir::new("dev-flow");
    let signer = load_or_create_dev_signer(data.path()).unwrap();
    let dir = keys_dir(data.path());
    // The private key file in the keys directory is not a .pub file: ignored.
    let verifier = load_node_keys(&dir, Some((&signer, &dev_key_path(data.path())))).unwrap();
    assert_eq!(verifier.key_ids().collect::<Vec<_>>(), [signer.key_id()]);
    let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, [DEV_SIGNING_KEY_FILE], "the dev key's public half is never written");
    let token = load_or_create_dev_signer(data.path()).unwrap().mint(UserId(8), DeviceId(1), 1_000, 60);
    assert_eq!(verifier.verify(token.as_bytes(), 1_010).unwrap().user, UserId(8));
}

#[test]
fn dev_key_ids_come_from_the_key() {
    let (a, b) = (Signer::generate(0).unwrap().0, Signer::generate(0).unwrap().0);
    let (id_a, id_b) = (dev_key_id(&a.public_key()), dev_key_id(&b.public_key()));
    assert_eq!(id_a, dev_key_id(&a.public_key()), "stable");
    assert_ne!(id_a, id_b, "two dev keys, two ids (a 2^-31 chance of failing)");
    assert!(id_a & DEV_KEY_ID_BIT != 0 && id_b & DEV_KEY_ID_BIT != 0, "out of the operators' range");

    // A token of another dev key names an id this node does not hold.
    let data = TempDir::new("dev-other");
    let ours = load_or_create_dev_signer(data.path()).unwrap();
    let verifier = load_node_keys(&keys_dir(data.path()), Some((&ours, &dev_key_path(data.path())))).unwrap();
    let theirs = dev_signer_from_pkcs8(&Signer::generate(0).unwrap().1).unwrap();
    let err = verifier.verify(theirs.mint(UserId(1), DeviceId(1), 1_000, 60).as_bytes(), 1_010).unwrap_err();
    assert_eq!(err.error_code(), protocol::ErrorCode::AUTH_UNKNOWN_KEY, "{err}");
}

#[test]
fn a_pub_file_with_the_dev_key_id_and_another_key_is_an_error() {
    let data = TempDir::new("dev-collision");
    let dev = load_or_create_dev_signer(data.path()).unwrap();
    let (dir, dev_file) = (keys_dir(data.path()), dev_key_path(data.path()));
    // The same key under its own id is harmless (an operator installed it).
    write_public_key(&dir, dev.key_id(), &dev.public_key()).unwrap();
    assert_eq!(load_node_keys(&dir, Some((&dev, &dev_file))).unwrap().len(), 1);

    let path = write_public_key(&dir, dev.key_id(), &KEY_A).unwrap();
    let err = load_node_keys(&dir, Some((&dev, &dev_file))).unwrap_err();
    assert!(matches!(err, KeyFileError::KeyIdCollision { key_id, .. } if key_id == dev.key_id()), "{err:?}");
    assert_eq!(err.path(), path);
    let message = err.to_string();
    assert!(message.contains(&dev.key_id().to_string()) && message.contains(&dev_file.display().to_string()));
    // Without the dev key the same directory loads.
    assert_eq!(load_node_keys(&dir, None).unwrap().public_key(dev.key_id()), Some(KEY_A));
}

#[test]
fn public_key_files_round_trip() {
    let dir = TempDir::new("pub-round-trip");
    let a = Signer::generate(1).unwrap().0;
    let b = Signer::generate(4_294_967_295).unwrap().0;
    let path = write_public_key(dir.path(), 1, &a.public_key()).unwrap();
    write_public_key(dir.path(), b.key_id(), &b.public_key()).unwrap();
    assert_eq!(path, public_key_path(dir.path(), 1));
    assert_eq!(fs::read_to_string(&path).unwrap(), format!("{}\n", public_key_to_hex(&a.public_key())));

    let verifier = load_verifier(dir.path()).unwrap();
    assert_eq!(verifier.len(), 2);
    assert_eq!(verifier.public_key(1), Some(a.public_key()));
    assert_eq!(verifier.public_key(u32::MAX), Some(b.public_key()));
    let token = b.mint(UserId(1), DeviceId(1), 0, 10);
    assert!(verifier.verify(token.as_bytes(), 0).is_ok());

    // Rewriting replaces the key.
    write_public_key(dir.path(), 1, &KEY_A).unwrap();
    assert_eq!(load_verifier(dir.path()).unwrap().public_key(1), Some(KEY_A));
}

#[test]
fn public_key_file_variants_that_are_accepted() {
    let dir = TempDir::new("pub-variants");
    let lower = public_key_to_hex(&KEY_A);
    fs::write(dir.path().join("1.pub"), &lower).unwrap();
    fs::write(dir.path().join("2.pub"), format!("{}\r\n", lower.to_uppercase())).unwrap();
    fs::write(dir.path().join("0.pub"), format!("{lower}\n")).unwrap();
    fs::write(dir.path().join("README"), "not a key").unwrap();
    fs::write(dir.path().join(".1.pub.swp"), "editor junk").unwrap();
    fs::write(dir.path().join("3.pub.bak"), "backup").unwrap();
    let verifier = load_verifier(dir.path()).unwrap();
    assert_eq!(verifier.key_ids().collect::<Vec<_>>(), [0, 1, 2]);
    assert!(verifier.key_ids().all(|id| verifier.public_key(id) == Some(KEY_A)));
}

#[test]
fn empty_directory_gives_an_empty_verifier() {
    let dir = TempDir::new("pub-empty");
    assert!(load_verifier(dir.path()).unwrap().is_empty());
}

#[test]
fn corrupt_public_key_file_is_reported_by_name() {
    let good = public_key_to_hex(&KEY_A);
    let bad_contents: [(&str, Vec<u8>); 8] = [
        ("empty", vec![]),
        ("63 chars", good.as_bytes()[..63].to_vec()),
        ("65 chars", format!("{good}0").into_bytes()),
        ("not hex", format!("{}g", &good[..63]).into_bytes()),
        ("two newlines", format!("{good}\n\n").into_bytes()),
        ("trailing space", format!("{good} \n").into_bytes()),
        ("raw 32 bytes", KEY_A.to_vec()),
        ("base64", b"q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n".to_vec()),
    ];
    for (what, content) in bad_contents {
        let dir = TempDir::new("pub-corrupt");
        write_public_key(dir.path(), 1, &KEY_A).unwrap();
        let bad = dir.path().join("5.pub");
        fs::write(&bad, content).unwrap();
        let err = load_verifier(dir.path()).unwrap_err();
        assert!(matches!(err, KeyFileError::BadContent { .. }), "{what}: {err:?}");
        assert_eq!(err.path(), bad, "{what}");
        assert!(err.to_string().contains("5.pub"), "{what}: {err}");
    }
}

#[test]
fn misnamed_public_key_file_is_reported_by_name() {
    for name in ["abc.pub", "01.pub", "4294967296.pub", "-1.pub", "+1.pub", ".pub", "1 .pub"] {
        let dir = TempDir::new("pub-misnamed");
        write_public_key(dir.path(), 1, &KEY_A).unwrap();
        let bad = dir.path().join(name);
        fs::write(&bad, format!("{}\n", public_key_to_hex(&KEY_A))).unwrap();
        match load_verifier(dir.path()) {
            Err(err @ KeyFileError::BadName { .. }) => {
                assert_eq!(err.path(), bad, "{name}");
                assert!(err.to_string().contains(name), "{name}: {err}");
            }
            // `.pub` alone has no extension to Path: it is a hidden file, ignored.
            Ok(verifier) if name == ".pub" => assert_eq!(verifier.len(), 1),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn directory_named_like_a_key_is_an_io_error_naming_it() {
    let dir = TempDir::new("pub-dir");
    let bad = dir.path().join("3.pub");
    fs::create_dir(&bad).unwrap();
    let err = load_verifier(dir.path()).unwrap_err();
    assert!(matches!(err, KeyFileError::Io { .. }), "{err:?}");
    assert_eq!(err.path(), bad);
}

#[test]
fn missing_directory_is_an_error_naming_it() {
    let parent = TempDir::new("pub-missing");
    let missing = parent.path().join("nope");
    let err = load_verifier(&missing).unwrap_err();
    assert!(matches!(&err, KeyFileError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound));
    assert_eq!(err.path(), missing);
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn hex_helpers_round_trip_and_reject_bad_input() {
    let key: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
    let hex = public_key_to_hex(&key);
    assert_eq!(hex.len(), 64);
    assert_eq!(&hex[..6], "00254a");
    assert_eq!(parse_public_key_hex(&hex), Some(key));
    assert_eq!(parse_public_key_hex(&hex.to_uppercase()), Some(key));
    assert_eq!(parse_public_key_hex(&hex[..62]), None);
    assert_eq!(parse_public_key_hex(&format!("{}zz", &hex[..62])), None);
    assert_eq!(parse_public_key_hex(&format!("{}é", &hex[..62])), None);
}
