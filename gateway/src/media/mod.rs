//! `[media]` resolved into the workers' ticket issuer: credentials and the
//! media id key read (never logged), the settings checked, and the object
//! store's background check started.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use gateway_media::{Media, MediaSettings};

use crate::config::{Config, MediaUrlStyle};

mod probe;

/// The media id key's file when `media.id_key_file` is unset.
const DEFAULT_ID_KEY_FILE: &str = "media-id.key";

/// The ticket issuer, or `None` while `media.endpoint` is unset.
pub(crate) fn start(config: &Config) -> Result<Option<Arc<Media>>> {
    let m = &config.media;
    let Some(endpoint) = &m.endpoint else { return Ok(None) };
    let (access_key, secret_key) = credentials(m.credentials_file.as_deref())?;
    let id_key_file = m.id_key_file.clone().unwrap_or_else(|| config.node.data_dir.join(DEFAULT_ID_KEY_FILE));
    let settings = MediaSettings {
        endpoint: endpoint.parse().with_context(|| format!("media.endpoint {endpoint:?}"))?,
        path_style: m.url_style == MediaUrlStyle::Path,
        bucket: m.bucket.clone(),
        region: m.region.clone(),
        access_key,
        secret_key,
        id_key: id_key(&id_key_file, m.id_key_file.is_none())?,
        key_prefix: m.key_prefix.clone(),
        ticket_lifetime: Duration::from_secs(m.ticket_lifetime_secs),
        max_blob_bytes: m.max_blob_bytes,
        quota_bytes_per_day: m.quota_bytes_per_day,
        tickets_per_min: m.tickets_per_min,
        retention: Duration::from_secs(u64::from(m.retention_days) * 86_400),
    };
    let media = Arc::new(Media::new(&settings).context("[media]")?);
    probe::spawn(&media, Duration::from_millis(m.probe_interval_ms), m.ca_file.as_deref())
        .context("starting the object store check")?;
    tracing::info!(endpoint = %settings.endpoint, bucket = %settings.bucket, "media tickets on");
    Ok(Some(media))
}

/// The store's access key id and secret: from the environment
/// (`GATEWAY_MEDIA_ACCESS_KEY`, `GATEWAY_MEDIA_SECRET_KEY`), else from the
/// file's first two lines.
fn credentials(file: Option<&Path>) -> Result<(String, String)> {
    match (std::env::var("GATEWAY_MEDIA_ACCESS_KEY"), std::env::var("GATEWAY_MEDIA_SECRET_KEY")) {
        (Ok(key), Ok(secret)) => return Ok((key, secret)),
        (Ok(_), Err(_)) | (Err(_), Ok(_)) => {
            bail!("GATEWAY_MEDIA_ACCESS_KEY and GATEWAY_MEDIA_SECRET_KEY must be set together")
        }
        (Err(_), Err(_)) => {}
    }
    let Some(file) = file else {
        bail!("[media] needs credentials: media.credentials_file, or GATEWAY_MEDIA_ACCESS_KEY and GATEWAY_MEDIA_SECRET_KEY");
    };
    let text =
        fs::read_to_string(file).with_context(|| format!("media.credentials_file {}", file.display()))?;
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    match (lines.next(), lines.next()) {
        (Some(key), Some(secret)) => Ok((key.to_owned(), secret.to_owned())),
        _ => bail!(
            "media.credentials_file {}: needs two lines, the access key id then the secret key",
            file.display()
        ),
    }
}

/// The media id key: the file's bytes (trailing white space ignored). The
/// node's own default file is made on first use, 32 random bytes in hex,
/// written whole under a temporary name and linked into place: it never
/// exists half-written, and if another process linked one first, that key
/// wins.
fn id_key(file: &Path, make: bool) -> Result<Vec<u8>> {
    if make && !file.exists() {
        let mut random = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
            .map_err(|_| anyhow::anyhow!("no random bytes for the media id key"))?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options
            .open(&tmp)
            .and_then(|mut out| out.write_all(hex.as_bytes()).and_then(|()| out.sync_all()))
            .and_then(|()| fs::hard_link(&tmp, file));
        let _ = fs::remove_file(&tmp);
        match written {
            Ok(()) => {
                tracing::info!(file = %file.display(), "made a media id key (one node: a fleet shares one media.id_key_file)")
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err).with_context(|| file.display().to_string()),
        }
    }
    let mut key = fs::read(file).with_context(|| format!("media id key {}", file.display()))?;
    while key.last().is_some_and(u8::is_ascii_whitespace) {
        key.pop();
    }
    if key.len() < 32 {
        bail!("media id key {}: {} bytes, at least 32 are needed", file.display(), key.len());
    }
    Ok(key)
}
