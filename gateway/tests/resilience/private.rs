//! The data dir is private whatever the umask: a node started at umask 000
//! leaves nothing in it that another user can read or write.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::support::{temp_dir, Gateway};
use super::{connect, send, Outcome};

/// Every path under `dir` (itself included) with its mode.
fn modes(dir: &Path, out: &mut Vec<(String, u32)>) {
    let mode = std::fs::symlink_metadata(dir).unwrap().permissions().mode();
    out.push((dir.display().to_string(), mode & 0o777));
    if std::fs::symlink_metadata(dir).unwrap().is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            modes(&entry.unwrap().path(), out);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_is_private_at_umask_000() {
    let launcher = ["sh", "-c", "umask 000; exec \"$0\" \"$@\""];
    let gateway = Gateway::start_under(temp_dir(), "", &[], &launcher);
    // Something in every part of the store: a device, a message.
    connect(&gateway, 2).await.close().await.unwrap();
    let mut a = connect(&gateway, 1).await;
    assert!(matches!(send(&mut a, "private").await.1, Outcome::Sent));

    let mut all = Vec::new();
    modes(&gateway.data_dir(), &mut all);
    assert!(all.len() > 5, "{all:?}");
    let (data, store) = (gateway.data_dir(), gateway.data_dir().join("store"));
    for (path, mode) in &all {
        assert_eq!(mode & 0o077, 0, "{path} is {mode:o}: readable or writable by others");
        if *path == data.display().to_string() || *path == store.display().to_string() {
            assert_eq!(*mode, 0o700, "{path}");
        }
    }
}
