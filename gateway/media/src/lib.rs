//! Media tickets (SPEC §6.8): the node's part in sending photos, voice notes
//! and files. Clients upload encrypted blobs straight to an S3-compatible
//! object store and fetch them from it; the node only authorises, with
//! short-lived URLs presigned here (AWS Signature V4 query authentication,
//! by `rusty-s3`: no network call on the ticket's path), and bounds what each
//! user may put.
//!
//! - [`Media::upload`] checks the size, the user's rate and daily quota,
//!   mints a sealed media id ([`MediaRef`]) and presigns a PUT of exactly
//!   that many bytes (`content-length` is a signed header) to a name derived
//!   from the id.
//! - [`Media::download`] opens the id (refused unless this fleet sealed it
//!   and it is younger than the retention) and presigns a GET.
//! - [`Media::set_store_up`] takes the node's background check of the store
//!   (`gateway/src/media/probe.rs`); while it fails, tickets are refused as
//!   retryable (`BACKEND_UNAVAILABLE`).
//!
//! No IO and no clock here (the hub calls it on its worker; `now_ms` comes
//! from the caller): `gateway-hub/tests/purity.rs` checks this crate too.
//! The one thing taken from the system is randomness, for object names.

mod id;
mod usage;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use protocol::{
    ErrorCode, Header, HttpMethod, List, MediaDownload, MediaDownloadTicket, MediaUpload, MediaUploadTicket,
    Note, Timestamp, Url as WireUrl,
};
use ring::rand::{SecureRandom as _, SystemRandom};
use rusty_s3::actions::{GetObject, HeadBucket, PutObject, S3Action as _};
use rusty_s3::{Bucket, Credentials, UrlStyle};
use url::Url;

pub use id::{IdKey, MediaRef};
use usage::{OverBudget, Usage};

/// The node's `[media]` settings, resolved (secrets read).
#[derive(Clone)]
pub struct MediaSettings {
    /// The object store's endpoint, `http(s)://host[:port]`.
    pub endpoint: Url,
    /// Path-style URLs (`endpoint/bucket/key`) rather than virtual-host
    /// style (`bucket.endpoint/key`).
    pub path_style: bool,
    /// Bucket name.
    pub bucket: String,
    /// Region the signatures name.
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key (never printed).
    pub secret_key: String,
    /// The fleet's key for media ids, at least 32 bytes (never printed).
    pub id_key: Vec<u8>,
    /// Prefix of every object's name.
    pub key_prefix: String,
    /// How long a ticket's URL is valid.
    pub ticket_lifetime: Duration,
    /// Largest blob, bytes.
    pub max_blob_bytes: u64,
    /// Bytes of upload tickets one user is granted per UTC day (per node).
    pub quota_bytes_per_day: u64,
    /// Tickets (both kinds) one user may ask for per minute (per node).
    pub tickets_per_min: u32,
    /// Media ids older than this are refused (the bucket's lifecycle rule
    /// deletes blobs after it).
    pub retention: Duration,
}

impl fmt::Debug for MediaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaSettings")
            .field("endpoint", &self.endpoint.as_str())
            .field("path_style", &self.path_style)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("id_key", &"<redacted>")
            .field("key_prefix", &self.key_prefix)
            .field("ticket_lifetime", &self.ticket_lifetime)
            .field("max_blob_bytes", &self.max_blob_bytes)
            .field("quota_bytes_per_day", &self.quota_bytes_per_day)
            .field("tickets_per_min", &self.tickets_per_min)
            .field("retention", &self.retention)
            .finish()
    }
}

/// Why the settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The endpoint, bucket or region make no valid bucket URL.
    #[error("media bucket: {0}")]
    Bucket(String),
    /// The media id key is too short.
    #[error("media id key has {0} bytes, at least 32 are needed")]
    ShortIdKey(usize),
    /// A ticket's URL would not fit the protocol's MAX_URL.
    #[error("a presigned URL would be {0} bytes, over the protocol's MAX_URL (shorten endpoint, bucket or key prefix)")]
    UrlTooLong(usize),
}

/// Why a ticket was refused: the ERROR the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The size is over `max_blob_bytes`.
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The user's bytes for the day are spent.
    QuotaExceeded {
        /// Until the day ends, ms.
        retry_after_ms: u64,
    },
    /// Too many tickets this minute.
    RateLimited {
        /// Until a ticket is available, ms.
        retry_after_ms: u64,
    },
    /// Not an id this fleet issued, or past retention.
    UnknownMedia,
    /// The object store does not answer its checks.
    StoreUnavailable {
        /// When the next check runs, ms.
        retry_after_ms: u64,
    },
}

impl Refusal {
    /// The ERROR code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::MEDIA_TOO_LARGE,
            Self::QuotaExceeded { .. } => ErrorCode::MEDIA_QUOTA_EXCEEDED,
            Self::RateLimited { .. } => ErrorCode::RATE_LIMITED,
            Self::UnknownMedia => ErrorCode::UNKNOWN_MEDIA,
            Self::StoreUnavailable { .. } => ErrorCode::BACKEND_UNAVAILABLE,
        }
    }

    /// ERROR's `retry_after_ms` (0 for terminal refusals).
    pub fn retry_after_ms(&self) -> u32 {
        let ms = match self {
            Self::QuotaExceeded { retry_after_ms }
            | Self::RateLimited { retry_after_ms }
            | Self::StoreUnavailable { retry_after_ms } => *retry_after_ms,
            Self::TooLarge { .. } | Self::UnknownMedia => 0,
        };
        u32::try_from(ms).unwrap_or(u32::MAX)
    }

    /// ERROR's text.
    pub fn text(&self) -> String {
        match self {
            Self::TooLarge { max } => format!("media over the largest blob of {max} bytes"),
            Self::QuotaExceeded { .. } => "media quota for today spent".to_owned(),
            Self::RateLimited { .. } => "too many media tickets".to_owned(),
            Self::UnknownMedia => "unknown media id".to_owned(),
            Self::StoreUnavailable { .. } => "object store unavailable".to_owned(),
        }
    }
}

/// Issues media tickets; shared by the node's workers.
pub struct Media {
    bucket: Bucket,
    credentials: Credentials,
    id_key: IdKey,
    random: SystemRandom,
    prefix: String,
    lifetime: Duration,
    max_blob: u64,
    retention_s: u64,
    usage: Usage,
    store_up: AtomicBool,
    /// When the next store check runs, ms (a refusal's retry hint).
    retry_ms: AtomicU64,
}

impl fmt::Debug for Media {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Media")
            .field("bucket", &self.bucket.name())
            .field("prefix", &self.prefix)
            .field("store_up", &self.store_up.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Media {
    /// Checks `settings` and makes the issuer.
    pub fn new(settings: &MediaSettings) -> Result<Self, SettingsError> {
        if settings.id_key.len() < 32 {
            return Err(SettingsError::ShortIdKey(settings.id_key.len()));
        }
        let style = if settings.path_style { UrlStyle::Path } else { UrlStyle::VirtualHost };
        let bucket =
            Bucket::new(settings.endpoint.clone(), style, settings.bucket.clone(), settings.region.clone())
                .map_err(|err| SettingsError::Bucket(err.to_string()))?;
        let media = Self {
            bucket,
            credentials: Credentials::new(settings.access_key.clone(), settings.secret_key.clone()),
            id_key: IdKey::new(&settings.id_key),
            random: SystemRandom::new(),
            prefix: settings.key_prefix.clone(),
            lifetime: settings.ticket_lifetime,
            max_blob: settings.max_blob_bytes,
            retention_s: settings.retention.as_secs(),
            usage: Usage::new(settings.tickets_per_min, settings.quota_bytes_per_day),
            store_up: AtomicBool::new(true),
            retry_ms: AtomicU64::new(1_000),
        };
        // The longest URL this node can issue: the longest object name, and
        // a signature of the same length as every other.
        let longest = MediaRef {
            class: protocol::MediaClass::Document,
            user: u64::MAX,
            issued_s: u64::MAX,
            size: u64::MAX,
            random: [0; id::RANDOM_LEN],
        };
        let url = media.put_url(&longest, 0);
        if url.as_str().len() > protocol::limits::MAX_URL {
            return Err(SettingsError::UrlTooLong(url.as_str().len()));
        }
        Ok(media)
    }

    /// MEDIA_UPLOAD from `user` at `now_ms`: its ticket, or why not.
    pub fn upload(&self, user: u64, upload: &MediaUpload, now_ms: u64) -> Result<MediaUploadTicket, Refusal> {
        if upload.size > self.max_blob {
            return Err(Refusal::TooLarge { max: self.max_blob });
        }
        self.check_store()?;
        let mut random = [0; id::RANDOM_LEN];
        // The system's generator does not fail on Linux once booted; if it
        // did, there would be no unguessable name (nor nonce), so refuse.
        self.random.fill(&mut random).map_err(|_| Refusal::StoreUnavailable { retry_after_ms: 1_000 })?;
        self.usage.take(user, Some(upload.size), now_ms).map_err(over_budget)?;
        let media =
            MediaRef { class: upload.class, user, issued_s: now_ms / 1_000, size: upload.size, random };
        let url = self.put_url(&media, now_ms);
        let header = Header {
            name: Note::truncated("content-length"),
            value: Note::truncated(&upload.size.to_string()),
        };
        Ok(MediaUploadTicket {
            request: upload.request,
            client_blob: upload.client_blob,
            media_id: protocol::MediaId::new(media.seal(&self.id_key)).unwrap_or_default(),
            method: HttpMethod::Put,
            url: WireUrl::truncated(url.as_str()),
            headers: List::from_items(&[header]).unwrap_or_default(),
            expires_at: self.expires_at(now_ms),
        })
    }

    /// MEDIA_DOWNLOAD from `user` at `now_ms`: its ticket, or why not.
    pub fn download(
        &self,
        user: u64,
        download: &MediaDownload,
        now_ms: u64,
    ) -> Result<MediaDownloadTicket, Refusal> {
        let media = MediaRef::open(download.media_id.bytes(), &self.id_key).ok_or(Refusal::UnknownMedia)?;
        if (now_ms / 1_000).saturating_sub(media.issued_s) > self.retention_s {
            return Err(Refusal::UnknownMedia);
        }
        self.check_store()?;
        self.usage.take(user, None, now_ms).map_err(over_budget)?;
        let key = media.object_key(&self.prefix);
        let url = GetObject::new(&self.bucket, Some(&self.credentials), &key)
            .sign_with_time(self.lifetime, &signing_time(now_ms));
        Ok(MediaDownloadTicket {
            request: download.request,
            size: media.size,
            url: WireUrl::truncated(url.as_str()),
            expires_at: self.expires_at(now_ms),
        })
    }

    /// Whether the last store check succeeded.
    pub fn store_up(&self) -> bool {
        self.store_up.load(Ordering::Relaxed)
    }

    /// A presigned `HEAD` of the bucket, for the store check.
    pub fn head_bucket_url(&self, now_ms: u64) -> Url {
        HeadBucket::new(&self.bucket, Some(&self.credentials))
            .sign_with_time(self.lifetime, &signing_time(now_ms))
    }

    /// Records a store check's outcome (`failure`: why it failed) and when
    /// the next one runs; the change from up to down and back is logged.
    pub fn set_store_up(&self, failure: Option<&str>, next_check: Duration) {
        let up = failure.is_none();
        let was = self.store_up.swap(up, Ordering::Relaxed);
        self.retry_ms.store(u64::try_from(next_check.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        match (was, failure) {
            (true, Some(why)) => tracing::warn!(
                bucket = self.bucket.name(),
                why,
                "object store check failed: media tickets refused (retryable) until it passes"
            ),
            (false, None) => tracing::info!(
                bucket = self.bucket.name(),
                "object store check passed: media tickets granted"
            ),
            _ => {}
        }
    }

    fn check_store(&self) -> Result<(), Refusal> {
        if self.store_up() {
            Ok(())
        } else {
            Err(Refusal::StoreUnavailable { retry_after_ms: self.retry_ms.load(Ordering::Relaxed) })
        }
    }

    fn put_url(&self, media: &MediaRef, now_ms: u64) -> Url {
        let key = media.object_key(&self.prefix);
        let mut put = PutObject::new(&self.bucket, Some(&self.credentials), &key);
        put.headers_mut().insert("content-length", media.size.to_string());
        put.sign_with_time(self.lifetime, &signing_time(now_ms))
    }

    fn expires_at(&self, now_ms: u64) -> Timestamp {
        // The signature carries whole seconds: the URL is refused from the
        // signing second plus the lifetime on.
        Timestamp(now_ms / 1_000 * 1_000 + u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX))
    }
}

fn over_budget(over: OverBudget) -> Refusal {
    match over {
        OverBudget::Rate(retry_after_ms) => Refusal::RateLimited { retry_after_ms },
        OverBudget::Quota(retry_after_ms) => Refusal::QuotaExceeded { retry_after_ms },
    }
}

/// `now_ms` as the signature's time (whole seconds).
fn signing_time(now_ms: u64) -> jiff::Timestamp {
    let seconds = i64::try_from(now_ms / 1_000).unwrap_or(i64::MAX);
    jiff::Timestamp::from_second(seconds).unwrap_or(jiff::Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: &str, path_style: bool) -> MediaSettings {
        MediaSettings {
            endpoint: endpoint.parse().unwrap(),
            path_style,
            bucket: "media".into(),
            region: "us-east-1".into(),
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "secret".into(),
            id_key: vec![1; 32],
            key_prefix: "m/".into(),
            ticket_lifetime: Duration::from_secs(900),
            max_blob_bytes: 1 << 20,
            quota_bytes_per_day: 1 << 30,
            tickets_per_min: 60,
            retention: Duration::from_secs(86_400),
        }
    }

    fn upload_url(settings: &MediaSettings) -> String {
        let upload = MediaUpload { request: 1, client_blob: 1, size: 10, class: protocol::MediaClass::Image };
        let ticket = Media::new(settings).unwrap().upload(7, &upload, 1_767_225_600_000).unwrap();
        ticket.url.as_str().to_owned()
    }

    #[test]
    fn urls_follow_the_configured_style() {
        let path = upload_url(&settings("http://127.0.0.1:9000", true));
        assert!(path.starts_with("http://127.0.0.1:9000/media/m/image/"), "{path}");
        let host = upload_url(&settings("https://s3.us-east-1.amazonaws.com", false));
        assert!(host.starts_with("https://media.s3.us-east-1.amazonaws.com/m/image/"), "{host}");
        for url in [path, host] {
            assert!(
                url.contains("X-Amz-Date=20260101T000000Z&X-Amz-Expires=900"),
                "signed at the ticket's time: {url}"
            );
            assert!(!url.contains("secret"), "the secret never travels: {url}");
        }
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let mut short = settings("http://127.0.0.1:9000", true);
        short.id_key = vec![1; 31];
        assert!(matches!(Media::new(&short), Err(SettingsError::ShortIdKey(31))));
        let mut long = settings("http://127.0.0.1:9000", true);
        long.key_prefix = "p/".repeat(1_000);
        assert!(matches!(Media::new(&long), Err(SettingsError::UrlTooLong(_))));
        let debug = format!("{:?}", settings("http://127.0.0.1:9000", true));
        assert!(!debug.contains("secret\"") && debug.contains("<redacted>"), "{debug}");
    }
}
