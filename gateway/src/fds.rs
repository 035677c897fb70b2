//! The process's descriptors and files: client connections get what the
//! open-file limit leaves after a reserve for everything else the node opens,
//! so that idle connections can never starve the store (which fails, and has
//! to recover, when it cannot open its next file), the admin listener or the
//! listeners; and what the node creates is private whatever the umask.

use anyhow::{bail, Result};
use rustix::fs::Mode;
use rustix::process::{getrlimit, setrlimit, umask, Resource};

/// Descriptors kept for everything but client connections: the store's table
/// files ([`backend_store::MAX_CACHED_FILES`]) and its journals, lock and
/// directories; each worker's listeners, poll or ring, and waker; the admin listener
/// and its clients; the push service's and a remote store's sockets; logs,
/// keys and certificates.
pub const FD_RESERVE: usize = backend_store::MAX_CACHED_FILES + 256;

/// The open-file limit (RLIMIT_NOFILE) after raising the soft limit to the
/// hard one (what systemd's `LimitNOFILE` sets both to): `None` if unlimited.
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        match setrlimit(Resource::Nofile, limit) {
            Ok(()) => {
                tracing::debug!(limit = ?limit.maximum, "raised the open-file soft limit to the hard limit")
            }
            Err(err) => tracing::warn!(%err, "cannot raise the open-file soft limit to the hard limit"),
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The node's connection limit: `configured` if set (non-zero), else the
/// open-file `limit` minus [`FD_RESERVE`]. A limit that leaves no room for
/// connections is an error; a configured value above the room is kept, with
/// a warning (those connections may starve the store).
pub fn connection_limit(configured: usize, limit: Option<u64>) -> Result<usize> {
    let Some(limit) = limit else {
        return Ok(configured);
    };
    let room = usize::try_from(limit).unwrap_or(usize::MAX).saturating_sub(FD_RESERVE);
    if room == 0 {
        bail!(
            "the open-file limit (RLIMIT_NOFILE) is {limit}, which leaves no descriptors for connections \
             after the {FD_RESERVE} reserved for the store, listeners and admin: raise it (LimitNOFILE=, \
             ulimit -n)"
        );
    }
    if configured == 0 {
        return Ok(room);
    }
    if configured > room {
        tracing::warn!(
            max_connections = configured,
            open_file_limit = limit,
            reserve = FD_RESERVE,
            "listen.max_connections exceeds the open-file limit minus the reserve: connections may starve the store"
        );
    }
    Ok(configured)
}

/// Makes every file and directory the process creates private to its user
/// (the umask gains `077`): the store's files, keys, the dead-letter file.
pub fn private_umask() {
    let old = umask(Mode::from_bits_truncate(0o077));
    umask(old | Mode::from_bits_truncate(0o077));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_limit_minus_the_reserve_and_a_limit_without_room_fails() {
        assert_eq!(connection_limit(0, Some(20_000)).unwrap(), 20_000 - FD_RESERVE);
        assert_eq!(connection_limit(100, Some(20_000)).unwrap(), 100);
        assert_eq!(connection_limit(0, None).unwrap(), 0);
        let err = connection_limit(0, Some(FD_RESERVE as u64)).unwrap_err().to_string();
        assert!(err.contains("RLIMIT_NOFILE") && err.contains(&FD_RESERVE.to_string()), "{err}");
    }

    #[test]
    fn the_documented_default_names_the_reserve() {
        let documented = crate::config::documented_defaults();
        assert!(
            documented.contains(&format!("minus {FD_RESERVE} ")),
            "the max_connections doc names the reserve"
        );
    }
}
