//! Listening and accepting: the worker's own `SO_REUSEPORT` listeners
//! registered with its poll, registered or not as the connection limit says
//! ([`Core::capacity_change`](crate::driver::worker::Core::capacity_change)).

use std::io;

use mio::net::TcpListener;
use mio::{Interest, Poll, Token};

use super::conn::Conn;
use super::{Worker, FIRST_SESSION, LISTENER, WSS_LISTENER};
use crate::driver::{reuseport_listener, tls_layer, Listen};
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
    /// Accepts from the ws listener, or with `tls` from the wss one, up to
    /// `accepts_per_turn` connections; a listener stopped there is taken
    /// from again next turn (`accept_from`).
    pub(super) fn accept(&mut self, now: Now, tls: bool) {
        let mut taken = 0;
        while self.core.listening {
            if taken == self.accepts_per_turn {
                let [ws, wss] = &mut self.accept_from;
                *(if tls { wss } else { ws }) = true;
                return;
            }
            taken += 1;
            let listener = if tls { &self.wss } else { &self.listener };
            let Some(listener) = listener else { return };
            let accepted = listener.accept();
            match accepted {
                Ok((mut stream, peer)) => {
                    if !self.core.admit(peer.ip(), now.at, &mut stream, tls) {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let Some(layer) = tls_layer(&self.core.shared, tls) else { continue };
                    // The hub takes the next free key: register under it first.
                    let token = Token(self.core.hub.vacant_key() + FIRST_SESSION);
                    if let Err(err) = self.poll.registry().register(&mut stream, token, Interest::READABLE) {
                        tracing::warn!(%err, "register accepted socket");
                        continue;
                    }
                    let key = self.core.hub.insert(now, Conn::new(stream, layer));
                    debug_assert_eq!(key + FIRST_SESSION, token.0);
                    self.core.metrics.accepts.inc();
                    self.core.metrics.sessions_open.inc();
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

    /// Registers or deregisters the listeners as the connection limit says.
    pub(super) fn check_capacity(&mut self) {
        if let Some(on) = self.core.capacity_change() {
            self.set_listening(on);
        }
    }

    /// Registers or deregisters every listener.
    pub(super) fn set_listening(&mut self, on: bool) {
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
