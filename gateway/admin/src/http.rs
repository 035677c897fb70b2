//! The admin listener: a small blocking HTTP/1.1 server on its own threads,
//! apart from the workers (pingora's admin/metrics port).
//!
//! | Request | Answer |
//! |---------|--------|
//! | `GET /metrics` | 200, [`Registry::render`] as `text/plain; version=0.0.4` |
//! | `GET /healthz` | 200 `ok` while the process runs |
//! | `GET /readyz` | 200 `ready` while the readiness flag is true, the store accepts writes ([`Registry::store_writable`]) and, in a fleet, the registry answers ([`Registry::registry_healthy`]), else 503 `not ready` (starting or draining), `store not writable` or `registry unreachable` |
//! | other method on those paths | 405 with `Allow: GET` |
//! | any other path | 404 |
//! | request head over the size limit | 431 |
//! | head not complete before the request timeout | 408 |
//! | malformed request line | 400 |
//! | more concurrent clients than allowed, none of them still sending its request | 503 `busy` |
//!
//! One request per connection: every response carries `Connection: close`.
//! The accept thread hands each connection to a short-lived thread, at most
//! [`AdminOptions::max_connections`] at once. Slow clients are cut, so they
//! never delay the health checks of a load balancer or a Prometheus scrape:
//!
//! - every connection has a deadline for its whole request head
//!   ([`AdminOptions::request_timeout`]) and one for its whole response
//!   ([`AdminOptions::write_timeout`]);
//! - when every slot is taken, a new connection takes the slot of the oldest
//!   one still sending its request head, which is closed without an answer:
//!   a probe sends its request at once, so only clients that drip or send
//!   nothing lose their slot, however many of them there are. A connection
//!   whose whole head already waits in its socket (its thread has not run
//!   yet, on a starved machine) is not "still sending": it keeps its slot;
//! - one descriptor is held in reserve: at the process's descriptor limit
//!   (EMFILE on accept) it is closed, one connection is accepted and served on
//!   the accept thread itself, and the reserve is taken back as that
//!   connection closes. Health checks are answered instead of waiting in the
//!   accept queue, and the loop never spins on the error.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::registry::{Registry, CONTENT_TYPE};

/// Limits of the admin listener.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    /// Deadline for a client to send its whole request head, from accept.
    pub request_timeout: Duration,
    /// Deadline for writing the whole response.
    pub write_timeout: Duration,
    /// Largest request head accepted (request line plus headers).
    pub max_request_bytes: usize,
    /// Connections served at once. One more takes the slot of the oldest
    /// connection still sending its request, or is answered 503 when there
    /// is none.
    pub max_connections: usize,
}

impl Default for AdminOptions {
    /// 2 s to send the request, 5 s to write the response, 8 KiB heads, 8
    /// connections.
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(5),
            max_request_bytes: 8 * 1024,
            max_connections: 8,
        }
    }
}

/// A running admin listener. Dropping it stops it too.
#[derive(Debug)]
pub struct AdminHandle {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AdminHandle {
    /// The bound address (the real port when `spawn` was given port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and waits for the accept thread to end. Connections
    /// already handed to their threads finish on their own (each within its
    /// deadlines).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let Some(thread) = self.thread.take() else { return };
        self.stop.store(true, Ordering::Release);
        // `accept` blocks: wake it with a connection of our own. If even that
        // fails, leave the thread detached rather than hang; it sees the flag
        // on its next connection.
        let ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let wake = SocketAddr::new(ip, self.local_addr.port());
        if TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok() {
            let _ = thread.join();
        }
    }
}

impl Drop for AdminHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Binds `addr` (port 0 picks one) and serves the admin endpoints on a new
/// thread named `admin`, with [`AdminOptions::default`].
///
/// `ready` is the readiness flag behind `/readyz`: the gateway sets it once
/// its listeners are up and clears it when it starts draining.
pub fn spawn(
    addr: impl ToSocketAddrs,
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
) -> io::Result<AdminHandle> {
    spawn_with(addr, registry, ready, AdminOptions::default())
}

/// [`spawn`] with explicit limits.
pub fn spawn_with(
    addr: impl ToSocketAddrs,
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    options: AdminOptions,
) -> io::Result<AdminHandle> {
    let listener = TcpListener::bind(addr)?;
    let local_addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        registry,
        ready,
        options,
        slots: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(0),
    });
    let thread = {
        let stop = Arc::clone(&stop);
        thread::Builder::new().name("admin".into()).spawn(move || accept_loop(&listener, &stop, &shared))?
    };
    Ok(AdminHandle { local_addr, stop, thread: Some(thread) })
}

/// What every connection thread shares.
struct Shared {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
    options: AdminOptions,
    /// The connections being served, oldest first.
    slots: Mutex<Vec<Tracked>>,
    next_id: AtomicU64,
}

/// A connection being served.
struct Tracked {
    id: u64,
    /// Shared with its thread (not a `try_clone`: no second descriptor).
    stream: Arc<TcpStream>,
    /// Still reading its request head: the slot may be taken from it.
    reading: bool,
}

impl Shared {
    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Tracked>> {
        // A panicking connection thread leaves the list consistent (every
        // change is one push, remove or flag write).
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `EMFILE` and `ENFILE` (the same numbers on Linux, the BSDs and macOS):
/// the process's or the system's descriptor limit.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(24 | 23))
}

/// The descriptor kept in reserve for accepting at the descriptor limit.
fn reserve() -> Option<File> {
    File::open("/dev/null").ok()
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, shared: &Arc<Shared>) {
    let mut spare = reserve();
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::Acquire) {
            return;
        }
        match accepted {
            Ok((stream, _)) => dispatch(stream, shared),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if out_of_descriptors(&e) => {
                match spare.take() {
                    Some(reserved) => {
                        drop(reserved);
                        // Served here rather than on a thread, so that its
                        // descriptor is free again the moment it closes and
                        // the reserve can be taken back before anyone else
                        // takes it.
                        if let Ok((stream, _)) = listener.accept() {
                            handle(&stream, shared);
                        }
                    }
                    // The reserve was lost to another thread: back off
                    // rather than spin.
                    None => thread::sleep(Duration::from_millis(10)),
                }
                spare = spare.or_else(reserve);
            }
            // Out of memory, or a connection reset before accept: back off
            // briefly instead of spinning on the error.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Hands the connection to its own thread. When every slot is taken, the
/// oldest connection still sending its request head is closed to make room;
/// when there is none, the new one is answered 503.
fn dispatch(stream: TcpStream, shared: &Arc<Shared>) {
    let stream = Arc::new(stream);
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    {
        let mut slots = shared.slots();
        if slots.len() >= shared.options.max_connections {
            let mut peeked = vec![0u8; shared.options.max_request_bytes];
            let sending = |t: &Tracked| t.reading && !head_waits(&t.stream, &mut peeked);
            let Some(oldest) = slots.iter().position(sending) else {
                drop(slots);
                return reject_busy(&stream);
            };
            // Its thread's read returns at once and the thread ends; until
            // then it runs outside the count, which this bounds to one such
            // thread per new connection.
            let evicted = slots.remove(oldest);
            let _ = evicted.stream.shutdown(Shutdown::Both);
        }
        slots.push(Tracked { id, stream: Arc::clone(&stream), reading: true });
    }
    let slot = Slot { shared: Arc::clone(shared), id };
    let served = Arc::clone(&stream);
    let spawned = thread::Builder::new().name("admin-conn".into()).spawn(move || {
        let slot = slot;
        handle(&served, &slot.shared);
    });
    if spawned.is_err() {
        // The closure (and its slot) was dropped with the error.
        reject_busy(&stream);
    }
}

/// Whether the end of a request head (a blank line) already waits, unread,
/// in `stream`'s receive buffer, within `buf.len()` bytes (the head size
/// limit): the client sent its whole request and only its thread has not
/// read it yet. A peek into `buf`, which neither blocks nor consumes
/// anything.
fn head_waits(stream: &TcpStream, buf: &mut [u8]) -> bool {
    let flags = rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT;
    match rustix::net::recv(stream, &mut *buf, flags) {
        Ok((n, _)) => buf.get(..n).is_some_and(|got| got.windows(HEAD_END.len()).any(|w| w == HEAD_END)),
        Err(_) => false,
    }
}

/// One connection's slot, released when dropped (also on a panic).
struct Slot {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.slots().retain(|t| t.id != self.id);
    }
}

/// Marks connection `stream` as past its request head: its slot is no
/// longer taken from it.
fn mark_answering(shared: &Shared, stream: &TcpStream) {
    if let Some(tracked) = shared.slots().iter_mut().find(|t| std::ptr::eq(&*t.stream, stream)) {
        tracked.reading = false;
    }
}

fn reject_busy(mut stream: &TcpStream) {
    // A fresh socket's send buffer takes this without blocking; the timeout
    // only guards the accept thread against the impossible.
    let response = Response::text(503, "Service Unavailable", "busy\n");
    let _ = response.write_to(&mut stream, Instant::now() + Duration::from_millis(100));
    let _ = stream.shutdown(Shutdown::Write);
}

/// Serves one request on `stream` and shuts it down (the caller closes it).
fn handle(mut stream: &TcpStream, shared: &Shared) {
    let options = &shared.options;
    let _ = stream.set_nodelay(true);
    let response = match read_head(&mut stream, options) {
        Ok(head) => {
            mark_answering(shared, stream);
            match parse_request_line(&head) {
                Some((method, path)) => route(method, path, shared),
                None => Response::text(400, "Bad Request", "bad request\n"),
            }
        }
        Err(HeadError::TooLarge) => {
            Response::text(431, "Request Header Fields Too Large", "request too large\n")
        }
        Err(HeadError::Timeout) => Response::text(408, "Request Timeout", "request timeout\n"),
        Err(HeadError::Closed) => return,
    };
    if response.write_to(&mut stream, Instant::now() + options.write_timeout).is_err() {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    // Read what the client may still send (a body we ignored) until it
    // closes, briefly, so the close does not turn into a reset that could
    // discard the response before the client reads it.
    if stream.set_read_timeout(Some(Duration::from_millis(100))).is_ok() {
        let mut sink = [0u8; 1024];
        let mut left = options.max_request_bytes;
        while let Ok(n @ 1..) = stream.read(&mut sink) {
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
    }
}

/// Why no request head could be read.
enum HeadError {
    /// Over [`AdminOptions::max_request_bytes`] without the blank line.
    TooLarge,
    /// The deadline passed first.
    Timeout,
    /// The client closed or the socket failed.
    Closed,
}

/// The blank line that ends a request head.
const HEAD_END: &[u8] = b"\r\n\r\n";

/// Reads until the blank line ending the head; returns the head without it.
fn read_head(stream: &mut &TcpStream, options: &AdminOptions) -> Result<Vec<u8>, HeadError> {
    let deadline = Instant::now() + options.request_timeout;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Timeout);
        }
        stream.set_read_timeout(Some(left)).map_err(|_| HeadError::Closed)?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(HeadError::Timeout)
            }
            Err(_) => return Err(HeadError::Closed),
        };
        let searched = head.len().saturating_sub(HEAD_END.len() - 1);
        debug_assert!(n <= chunk.len(), "`Read::read` returns at most the buffer's length");
        head.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(at) =
            head.get(searched..).and_then(|tail| tail.windows(HEAD_END.len()).position(|w| w == HEAD_END))
        {
            head.truncate(searched + at);
            return if head.len() + HEAD_END.len() > options.max_request_bytes {
                Err(HeadError::TooLarge)
            } else {
                Ok(head)
            };
        }
        if head.len() > options.max_request_bytes {
            return Err(HeadError::TooLarge);
        }
    }
}

/// `GET /path?query HTTP/1.1` → (`GET`, `/path`).
fn parse_request_line(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
        || !matches!(version, "HTTP/1.1" | "HTTP/1.0")
    {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Some((method, path))
}

fn route(method: &str, path: &str, shared: &Shared) -> Response {
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz");
    if !known {
        return Response::text(404, "Not Found", "not found\n");
    }
    if method != "GET" {
        let mut response = Response::text(405, "Method Not Allowed", "method not allowed\n");
        response.allow_get = true;
        return response;
    }
    match path {
        "/metrics" => {
            let mut body = String::with_capacity(16 * 1024);
            shared.registry.render(&mut body);
            Response { status: 200, reason: "OK", content_type: CONTENT_TYPE, body, allow_get: false }
        }
        "/readyz" if !shared.ready.load(Ordering::Acquire) => {
            Response::text(503, "Service Unavailable", "not ready\n")
        }
        "/readyz" if !shared.registry.store_writable() => {
            Response::text(503, "Service Unavailable", "store not writable\n")
        }
        "/readyz" if !shared.registry.registry_healthy() => {
            Response::text(503, "Service Unavailable", "registry unreachable\n")
        }
        "/readyz" => Response::text(200, "OK", "ready\n"),
        _ => Response::text(200, "OK", "ok\n"),
    }
}

/// A complete response, written in one go.
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
    allow_get: bool,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: &str) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            allow_get: false,
        }
    }

    /// Writes the response by `deadline`, however slowly the client reads.
    fn write_to(&self, stream: &mut &TcpStream, deadline: Instant) -> io::Result<()> {
        let allow = if self.allow_get { "Allow: GET\r\n" } else { "" };
        let mut message = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len(),
        )
        .into_bytes();
        message.extend_from_slice(self.body.as_bytes());
        let mut rest = message.as_slice();
        while !rest.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            stream.set_write_timeout(Some(left))?;
            match stream.write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    debug_assert!(n <= rest.len(), "`Write::write` takes at most what it is given");
                    rest = rest.get(n..).unwrap_or_default();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The eviction's peek: a whole head waiting in the socket is seen
    /// (the probe whose thread has not run yet keeps its slot), a partial
    /// one or none is not, and the peek leaves the bytes for the reader.
    #[test]
    fn a_whole_head_waiting_in_the_socket_is_seen_without_being_read() {
        // Test setup on loopback: a failure is a failed assertion.
        #![allow(clippy::unwrap_used)]
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let mut buf = [0u8; 8192];
        assert!(!head_waits(&server, &mut buf), "nothing sent");
        client.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
        let arrived = |stream: &TcpStream, len: usize| {
            let mut buf = [0u8; 64];
            let deadline = Instant::now() + Duration::from_secs(5);
            while rustix::net::recv(stream, &mut buf[..], rustix::net::RecvFlags::PEEK).map_or(0, |(n, _)| n)
                < len
            {
                assert!(Instant::now() < deadline, "the bytes never arrived");
                thread::sleep(Duration::from_millis(1));
            }
        };
        arrived(&server, 32);
        assert!(!head_waits(&server, &mut buf), "no blank line yet");
        client.write_all(b"\r\n").unwrap();
        arrived(&server, 34);
        assert!(head_waits(&server, &mut buf));
        assert!(!head_waits(&server, &mut buf[..20]), "beyond the size limit it is not a head");
        let mut reader = &server;
        let head = read_head(&mut reader, &AdminOptions::default()).map_err(|_| "no head").unwrap();
        assert_eq!(head, b"GET /healthz HTTP/1.1\r\nHost: x");
    }

    #[test]
    fn request_lines() {
        assert_eq!(parse_request_line(b"GET /metrics HTTP/1.1\r\nHost: x"), Some(("GET", "/metrics")));
        assert_eq!(parse_request_line(b"GET /readyz?verbose=1 HTTP/1.0"), Some(("GET", "/readyz")));
        assert_eq!(parse_request_line(b"POST /metrics HTTP/1.1"), Some(("POST", "/metrics")));
        assert_eq!(parse_request_line(b"GET /metrics HTTP/2.0"), None);
        assert_eq!(parse_request_line(b"GET  /metrics HTTP/1.1"), None);
        assert_eq!(parse_request_line(b"GET metrics HTTP/1.1"), None);
        assert_eq!(parse_request_line(b"get /metrics HTTP/1.1"), None);
        assert_eq!(parse_request_line(b"\xff /metrics HTTP/1.1"), None);
        assert_eq!(parse_request_line(b""), None);
    }
}
