//! Server configurations from PEM files, and [`Reloadable`], the holder the
//! node swaps on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;

use crate::TlsError;

/// Sessions the server-side resumption cache holds (TLS 1.2 session ids, and
/// TLS 1.3 resumption without tickets). Shared by every worker; tickets keep
/// it nearly unused when they are on.
pub const SESSION_CACHE_ENTRIES: usize = 256;

/// The one ALPN protocol offered: WebSocket runs over HTTP/1.1.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Where the certificate and key live, and the resumption settings
/// (`[tls]` of the node's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Issue stateless session tickets (TLS 1.2 and 1.3), so reconnecting
    /// clients resume without a full handshake. Off: no tickets at all;
    /// TLS 1.2 clients may still resume by session id from the small cache.
    pub session_tickets: bool,
}

/// What survives a reload: resumption state, so that rotating a certificate
/// does not force every reconnecting client through a full handshake.
#[derive(Debug, Clone)]
struct Resumption {
    ticketer: Option<Arc<dyn ProducesTickets>>,
    cache: Arc<dyn StoresServerSessions>,
}

impl Resumption {
    fn new(settings: &Settings) -> Result<Self, TlsError> {
        let ticketer = match settings.session_tickets {
            true => Some(ring::Ticketer::new().map_err(TlsError::Ticketer)?),
            false => None,
        };
        Ok(Self { ticketer, cache: ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES) })
    }
}

/// Reads the certificate chain and private key named by `settings` and builds
/// a server configuration (ring provider, TLS 1.3 and 1.2, ALPN `http/1.1`,
/// tickets per `settings`, a [`SESSION_CACHE_ENTRIES`]-entry session cache).
pub fn load_server_config(settings: &Settings) -> Result<Arc<ServerConfig>, TlsError> {
    build(settings, &Resumption::new(settings)?)
}

fn build(settings: &Settings, resumption: &Resumption) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_chain(&settings.cert)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .map_err(|source| TlsError::PrivateKey { path: settings.key.clone(), source })?;
    let refused =
        |source| TlsError::Refused { cert: settings.cert.clone(), key: settings.key.clone(), source };
    let provider = Arc::new(ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(refused)?
        .with_no_client_auth()
        // Checks that the key matches the certificate (InconsistentKeys).
        .with_single_cert(chain, key)
        .map_err(refused)?;
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    config.session_storage = Arc::clone(&resumption.cache);
    match &resumption.ticketer {
        Some(ticketer) => config.ticketer = Arc::clone(ticketer),
        None => {
            // TLS 1.3 "tickets" without a ticketer would be cache entries:
            // with tickets off, none are sent.
            config.send_tls13_tickets = 0;
        }
    }
    // No 0-RTT: early data is replayable, and HELLO is not idempotent.
    config.max_early_data_size = 0;
    Ok(Arc::new(config))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificate = |source| TlsError::Certificate { path: path.to_owned(), source };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(certificate)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(certificate)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(chain)
}

/// The wss listener's current server configuration, shared by every worker
/// and swapped by [`Reloadable::reload`] (SIGHUP).
///
/// Workers call [`Reloadable::current`] once per accepted connection, never
/// per record: a connection keeps the configuration it started with, so
/// sessions open at a reload keep their connections while new ones get the
/// new certificate. Session tickets and the session cache carry over reloads.
///
/// ```no_run
/// use gateway_tls::{Reloadable, Settings};
///
/// let tls = Reloadable::load(Settings {
///     cert: "/etc/gateway/tls/cert.pem".into(),
///     key: "/etc/gateway/tls/key.pem".into(),
///     session_tickets: true,
/// })?;
/// let config = tls.current(); // per accepted connection
/// # let _ = config;
/// // On SIGHUP; on failure the old configuration stays in use.
/// if let Err(err) = tls.reload() {
///     eprintln!("keeping the old certificate: {err}");
/// }
/// # Ok::<(), gateway_tls::TlsError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Reloadable {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    resumption: Resumption,
    current: RwLock<Arc<ServerConfig>>,
}

impl Reloadable {
    /// Loads the files named by `settings` (see [`load_server_config`]).
    pub fn load(settings: Settings) -> Result<Self, TlsError> {
        let resumption = Resumption::new(&settings)?;
        let config = build(&settings, &resumption)?;
        Ok(Self { inner: Arc::new(Inner { settings, resumption, current: RwLock::new(config) }) })
    }

    /// The configuration for a new connection.
    pub fn current(&self) -> Arc<ServerConfig> {
        match self.inner.current.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reads the certificate and key files again and, if they load, makes
    /// them the configuration of new connections. On error the old
    /// configuration stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.inner.settings, &self.inner.resumption)?;
        match self.inner.current.write() {
            Ok(mut current) => *current = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }

    /// The files this holder reads.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }
}
