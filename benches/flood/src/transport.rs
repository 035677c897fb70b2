//! The byte pipe under every flood connection: a non-blocking socket bound to
//! a source address, the optional TLS layer, the plaintext read buffer and
//! the bytes the socket did not take yet, and the WebSocket frames in and
//! out. [`crate::conn`] (the protocol) and [`crate::raw`] (echo, hub,
//! handshakes) put their stages on top of it.
//!
//! Errors are short kinds for the error counters (`connect_refused`,
//! `read_reset`, `tls_bad_certificate`, ...).

use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::BytesMut;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token as MioToken};
use rustls::pki_types::ServerName;
use rustls::ClientConnection;
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::stats::Shared;
use crate::ws::{self, Message};

/// TLS settings of one connection and the name to verify.
pub(crate) type TlsParams = (Arc<rustls::ClientConfig>, ServerName<'static>);

/// One connection's socket and buffers.
#[derive(Debug)]
pub(crate) struct Transport {
    stream: TcpStream,
    tls: Option<Box<ClientConnection>>,
    /// Bytes received and not yet parsed (plaintext).
    pub(crate) inbuf: BytesMut,
    /// Plaintext bytes the socket did not take yet (plain ws only; rustls
    /// buffers its own records).
    outbuf: Vec<u8>,
    reader: ws::MessageReader,
}

impl Transport {
    /// A socket bound to `source` (port chosen by the kernel), connecting to
    /// `target`, with a TLS client if `tls`.
    pub(crate) fn open(
        target: SocketAddr,
        source: Option<IpAddr>,
        tls: Option<&TlsParams>,
    ) -> Result<Self, String> {
        let stream = connect(target, source).map_err(|e| io_kind("connect", &e))?;
        let tls = match tls {
            Some((config, name)) => Some(Box::new(
                ClientConnection::new(Arc::clone(config), name.clone()).map_err(|e| tls_kind(&e))?,
            )),
            None => None,
        };
        Ok(Self {
            stream,
            tls,
            inbuf: BytesMut::new(),
            outbuf: Vec::new(),
            reader: ws::MessageReader::default(),
        })
    }

    /// Registers the socket with a poll (readable and writable, edge-triggered).
    pub(crate) fn register(&mut self, registry: &Registry, token: MioToken) -> Result<(), String> {
        registry
            .register(&mut self.stream, token, Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| io_kind("register", &e))
    }

    /// Ends the connection abruptly: no close frame, and a TCP reset rather
    /// than a FIN (SO_LINGER 0), as a phone that lost its network looks to
    /// the server once its keepalives fail. The socket closes when `self` drops.
    pub(crate) fn abort(self) {
        let _ = SockRef::from(&self.stream).set_linger(Some(std::time::Duration::ZERO));
    }

    /// Whether the non-blocking connect completed (mio's recipe: a pending
    /// error fails it, `NotConnected` from `peer_addr` means not yet).
    pub(crate) fn check_connected(&mut self) -> Result<bool, String> {
        if let Some(err) = self.stream.take_error().map_err(|e| io_kind("connect", &e))? {
            return Err(io_kind("connect", &err));
        }
        match self.stream.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(io_kind("connect", &e)),
        }
    }

    /// Whether the TLS handshake is still running (false for plain ws).
    pub(crate) fn tls_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.is_handshaking())
    }

    /// Reads everything the socket has into `inbuf` (through TLS for wss).
    /// Returns whether the peer closed its side.
    pub(crate) fn read(&mut self, scratch: &mut [u8], shared: &Shared) -> Result<bool, String> {
        match self.tls.as_deref_mut() {
            None => loop {
                match self.stream.read(scratch) {
                    Ok(0) => return Ok(true),
                    Ok(n) => self.inbuf.extend_from_slice(filled(scratch, n)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_kind("read", &e)),
                }
            },
            Some(tls) => loop {
                match tls.read_tls(&mut self.stream) {
                    Ok(0) => {
                        drain_plaintext(tls, &mut self.inbuf, scratch)?;
                        return Ok(true);
                    }
                    Ok(_) => {
                        tls.process_new_packets().map_err(|e| {
                            // Send the alert rustls queued, for the server's log.
                            let _ = tls.write_tls(&mut self.stream);
                            let kind = tls_kind(&e);
                            shared.detail(&kind, &e.to_string());
                            kind
                        })?;
                        if drain_plaintext(tls, &mut self.inbuf, scratch)? {
                            return Ok(true);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_kind("read", &e)),
                }
            },
        }
    }

    /// The next complete WebSocket message in `inbuf`, if any.
    pub(crate) fn next_message(&mut self, max: usize) -> Result<Option<Message>, String> {
        self.reader.next(&mut self.inbuf, max).map_err(|e| e.kind().to_owned())
    }

    /// An idle connection keeps no read buffer.
    pub(crate) fn shrink(&mut self) {
        if self.inbuf.is_empty() && self.inbuf.capacity() > 0 {
            self.inbuf = BytesMut::new();
        }
    }

    /// Queues one masked WebSocket frame (`out` is scratch space).
    pub(crate) fn send_frame(
        &mut self,
        opcode: u8,
        payload: &[u8],
        mask: [u8; 4],
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        out.clear();
        ws::encode_client_frame(out, opcode, payload, mask);
        self.write_plaintext(out)
    }

    /// Queues plaintext: into rustls for wss; for ws straight to the socket
    /// when nothing is queued, the rest into `outbuf`.
    pub(crate) fn write_plaintext(&mut self, bytes: &[u8]) -> Result<(), String> {
        if let Some(tls) = self.tls.as_deref_mut() {
            return tls.writer().write_all(bytes).map_err(|e| io_kind("tls_write", &e));
        }
        let mut rest = bytes;
        if self.outbuf.is_empty() {
            while !rest.is_empty() {
                match self.stream.write(rest) {
                    Ok(n) => {
                        debug_assert!(n <= rest.len(), "`Write::write` takes at most what it is given");
                        rest = rest.get(n..).unwrap_or_default();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_kind("write", &e)),
                }
            }
        }
        self.outbuf.extend_from_slice(rest);
        Ok(())
    }

    /// Writes what is queued until the socket is full.
    pub(crate) fn flush(&mut self) -> Result<(), String> {
        if let Some(tls) = self.tls.as_deref_mut() {
            while tls.wants_write() {
                match tls.write_tls(&mut self.stream) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_kind("write", &e)),
                }
            }
            return Ok(());
        }
        while !self.outbuf.is_empty() {
            match self.stream.write(&self.outbuf) {
                Ok(n) => {
                    self.outbuf.drain(..n.min(self.outbuf.len()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_kind("write", &e)),
            }
        }
        if self.outbuf.capacity() > 0 {
            self.outbuf = Vec::new();
        }
        Ok(())
    }
}

/// Moves the plaintext rustls decrypted into `inbuf`; true if the server sent
/// close_notify.
fn drain_plaintext(
    tls: &mut ClientConnection,
    inbuf: &mut BytesMut,
    scratch: &mut [u8],
) -> Result<bool, String> {
    loop {
        match tls.reader().read(scratch) {
            Ok(0) => return Ok(true),
            Ok(n) => inbuf.extend_from_slice(filled(scratch, n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(true),
            Err(e) => return Err(io_kind("tls_read", &e)),
        }
    }
}

/// A non-blocking TCP socket bound to `source` (port chosen by the kernel),
/// connecting to `target`.
fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(source) = source {
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// A short error kind for counters: `connect_refused`, `read_reset`, ...
pub(crate) fn io_kind(what: &str, err: &io::Error) -> String {
    let kind = match err.kind() {
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::ConnectionReset => "reset",
        io::ErrorKind::ConnectionAborted => "aborted",
        io::ErrorKind::BrokenPipe => "broken_pipe",
        io::ErrorKind::AddrNotAvailable => "addr_not_available",
        io::ErrorKind::AddrInUse => "addr_in_use",
        io::ErrorKind::TimedOut => "timed_out",
        _ if err.raw_os_error() == Some(libc::EMFILE) => "too_many_open_files",
        _ => "other",
    };
    format!("{what}_{kind}")
}

fn tls_kind(err: &rustls::Error) -> String {
    let kind = match err {
        rustls::Error::InvalidCertificate(_) => "bad_certificate",
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::PeerIncompatible(_) => "peer_incompatible",
        rustls::Error::PeerMisbehaved(_) => "peer_misbehaved",
        _ => "other",
    };
    format!("tls_{kind}")
}

/// The first `n` bytes of `scratch`, which a read of `n` bytes filled
/// (`Read::read` returns at most the buffer's length).
fn filled(scratch: &[u8], n: usize) -> &[u8] {
    debug_assert!(n <= scratch.len(), "read {n} bytes into {}", scratch.len());
    scratch.get(..n).unwrap_or_default()
}
