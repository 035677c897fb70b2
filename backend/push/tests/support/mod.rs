//! A real HTTP/1.1 receiver for the webhook tests: a std `TcpListener` on
//! 127.0.0.1, one thread per connection, answering each POST with a status
//! chosen by a script and closing the connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// What the receiver answers to request number `n` (0-based).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u64>,
    /// Held before answering (to show concurrency or provoke timeouts).
    pub(crate) delay: Duration,
}

impl Reply {
    pub(crate) fn status(status: u16) -> Self {
        Self { status, retry_after: None, delay: Duration::ZERO }
    }
}

/// One received request.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) at: Instant,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) content_type: String,
    pub(crate) body: Value,
}

type Script = dyn Fn(usize) -> Reply + Send + Sync;

pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    active: Arc<AtomicUsize>,
    max_active: Arc<AtomicUsize>,
}

impl Receiver {
    /// Starts listening; the accept thread lives until the test process ends.
    pub(crate) fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let active = Arc::new(AtomicUsize::new(0));
        let max_active = Arc::new(AtomicUsize::new(0));
        let script: Arc<Script> = Arc::new(script);
        let counter = Arc::new(AtomicUsize::new(0));
        {
            let (received, active, max_active) = (received.clone(), active.clone(), max_active.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let (received, active, max_active, script, counter) = (
                        received.clone(),
                        active.clone(),
                        max_active.clone(),
                        script.clone(),
                        counter.clone(),
                    );
                    std::thread::spawn(move || {
                        serve(stream, &received, &active, &max_active, &*script, &counter);
                    });
                }
            });
        }
        Self { addr, received, active, max_active }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/push", self.addr)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Most requests being answered at the same time so far.
    pub(crate) fn max_concurrent(&self) -> usize {
        self.max_active.load(Ordering::SeqCst)
    }

    #[allow(dead_code)]
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
}

fn serve(
    mut stream: TcpStream,
    received: &Mutex<Vec<Received>>,
    active: &AtomicUsize,
    max_active: &AtomicUsize,
    script: &Script,
    counter: &AtomicUsize,
) {
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read the head, then the body by content-length.
    let (head_len, method, path, content_type, length) = loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return, // pooled connection closed unused
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(len) = req.parse(&buf).unwrap() {
            let header = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
                    .unwrap_or_default()
            };
            let length: usize = header("content-length").parse().unwrap();
            break (
                len,
                req.method.unwrap().to_owned(),
                req.path.unwrap().to_owned(),
                header("content-type"),
                length,
            );
        }
    };
    while buf.len() < head_len + length {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "body cut short");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Value = serde_json::from_slice(&buf[head_len..head_len + length]).unwrap();
    let n = counter.fetch_add(1, Ordering::SeqCst);
    received.lock().unwrap().push(Received { at: Instant::now(), method, path, content_type, body });
    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
    max_active.fetch_max(now, Ordering::SeqCst);
    let reply = script(n);
    std::thread::sleep(reply.delay);
    active.fetch_sub(1, Ordering::SeqCst);
    let retry_after = reply.retry_after.map(|s| format!("retry-after: {s}\r\n")).unwrap_or_default();
    let response = format!(
        "HTTP/1.1 {} Scripted\r\ncontent-length: 0\r\n{retry_after}connection: close\r\n\r\n",
        reply.status
    );
    let _ = stream.write_all(response.as_bytes());
}

/// Polls `cond` every 5 ms for up to 5 s; true if it held.
pub(crate) fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}
