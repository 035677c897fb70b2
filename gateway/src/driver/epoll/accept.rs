//! Listening and accepting: the worker's own `SO_REUSEPORT` listeners, the
//! per-IP admission buckets, and `max_connections` with hysteresis (sozu's:
//! stop at the limit, resume below `accept_resume_ratio` of it, so the
//! listener does not flap; `gateway_accept_paused` shows it).

use std::io;
use std::net::SocketAddr;

use gateway_tls::TlsConn;
use mio::net::TcpListener;
use mio::{Interest, Poll, Token};

use super::conn::Conn;
use super::{admission, Listen, Worker, FIRST_SESSION, LISTENER, WSS_LISTENER};
use gateway_hub::Now;

/// Binds and registers the ws listener and, if `listen.wss` is set, the wss
/// one (which needs a TLS configuration: `with_tls`).
pub(super) fn listeners(
    poll: &Poll,
    listen: Listen,
    with_tls: bool,
) -> io::Result<(TcpListener, Option<TcpListener>)> {
    let mut listener = TcpListener::from_std(reuseport_listener(listen.ws, listen.backlog)?);
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let wss = match (listen.wss, with_tls) {
        (Some(addr), true) => {
            let mut wss = TcpListener::from_std(reuseport_listener(addr, listen.backlog)?);
            poll.registry().register(&mut wss, WSS_LISTENER, Interest::READABLE)?;
            Some(wss)
        }
        (Some(_), false) => return Err(io::Error::other("a wss listener needs a TLS configuration")),
        (None, _) => None,
    };
    Ok((listener, wss))
}

impl Worker {
    /// Accepts from the ws listener, or with `tls` from the wss one.
    pub(super) fn accept(&mut self, now: Now, tls: bool) {
        while self.listening {
            let listener = if tls { &self.wss } else { &self.listener };
            let Some(listener) = listener else { return };
            let accepted = listener.accept();
            match accepted {
                Ok((mut stream, peer)) => {
                    if !self.admission.admit(peer.ip(), now.at) {
                        // Best effort: the answer fits any socket buffer. On
                        // the wss listener plain HTTP would be a garbage TLS
                        // record, so that connection is just closed.
                        if !tls {
                            use std::io::Write;
                            let _ = stream.write(admission::TOO_MANY);
                        }
                        self.metrics.drops.inc(gateway_admin::DropReason::RateLimited);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    // The configuration current now; a reload applies to
                    // later connections.
                    let tls = match (tls, &self.shared.tls) {
                        (true, Some(config)) => match TlsConn::new(config.current()) {
                            Ok(tls) => Some(tls),
                            Err(err) => {
                                tracing::warn!(%err, "TLS connection");
                                continue;
                            }
                        },
                        _ => None,
                    };
                    // The hub takes the next free key: register under it first.
                    let token = Token(self.hub.vacant_key() + FIRST_SESSION);
                    if let Err(err) = self.poll.registry().register(&mut stream, token, Interest::READABLE) {
                        tracing::warn!(%err, "register accepted socket");
                        continue;
                    }
                    let key = self.hub.insert(now, Conn::new(stream, tls));
                    debug_assert_eq!(key + FIRST_SESSION, token.0);
                    self.metrics.accepts.inc();
                    self.metrics.sessions_open.inc();
                    self.check_capacity();
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    // EMFILE and friends: stop for this turn; the backlog keeps them.
                    tracing::warn!(%err, "accept");
                    return;
                }
            }
        }
    }

    /// Stops accepting at `max_connections`; resumes below the resume ratio.
    pub(super) fn check_capacity(&mut self) {
        let max = self.shared.max_connections;
        if max == 0 || self.draining.is_some() {
            return;
        }
        let open = self.hub.len();
        if self.listening && open >= max {
            self.set_listening(false);
            self.metrics.accept_pauses.inc();
            self.metrics.accept_paused.set(1);
            tracing::debug!(worker = self.index, open, max, "accept paused");
        } else if !self.listening && (open as f64) < max as f64 * self.shared.resume_ratio {
            self.set_listening(true);
            self.metrics.accept_paused.set(0);
            tracing::debug!(worker = self.index, open, max, "accept resumed");
        }
    }

    /// Registers or deregisters every listener.
    pub(super) fn set_listening(&mut self, on: bool) {
        self.listening = on;
        let registry = self.poll.registry();
        let listeners = self
            .listener
            .as_mut()
            .map(|ws| (ws, LISTENER))
            .into_iter()
            .chain(self.wss.as_mut().map(|wss| (wss, WSS_LISTENER)));
        for (listener, token) in listeners {
            let _ = match on {
                true => registry.register(listener, token, Interest::READABLE),
                false => registry.deregister(listener),
            };
        }
    }
}

/// A listener with `SO_REUSEPORT`: every worker binds the same address and the
/// kernel spreads new connections across their accept queues.
fn reuseport_listener(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}
