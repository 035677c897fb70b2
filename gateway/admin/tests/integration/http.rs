//! The admin listener over real sockets on 127.0.0.1:0.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use gateway_admin::http::{spawn_with, AdminHandle, AdminOptions};
use gateway_admin::{names, spawn, Registry};
use protocol::FrameKind;

use crate::support::{check_against_names, get, http, parse, split_response};

struct Admin {
    handle: AdminHandle,
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
}

impl Admin {
    fn start(options: Option<AdminOptions>) -> Self {
        let registry = Arc::new(Registry::new(2));
        let ready = Arc::new(AtomicBool::new(true));
        let handle = match options {
            None => spawn("127.0.0.1:0", Arc::clone(&registry), Arc::clone(&ready)),
            Some(options) => spawn_with("127.0.0.1:0", Arc::clone(&registry), Arc::clone(&ready), options),
        }
        .unwrap();
        Self { handle, registry, ready }
    }

    fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Opens a connection and sends the start of a request that never ends.
fn slowloris(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: slow\r\n").unwrap();
    stream
}

fn read_all(mut stream: TcpStream) -> (u16, String, String) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    split_response(&response)
}

#[test]
fn metrics_are_served_as_exposition_format() {
    let admin = Admin::start(None);
    assert_ne!(admin.addr().port(), 0);
    let (status, head, body) = get(admin.addr(), "/metrics");
    assert_eq!(status, 200, "{head}");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(header(&head, "content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert_eq!(header(&head, "connection"), Some("close"));
    assert_eq!(header(&head, "content-length"), Some(body.len().to_string().as_str()));
    check_against_names(&parse(&body).unwrap());

    let worker = admin.registry.worker(1).unwrap();
    worker.accepts.add(41);
    worker.frames_out.inc(FrameKind::Pong);
    let (_, _, body) = get(admin.addr(), "/metrics?x=1");
    let expo = parse(&body).unwrap();
    assert_eq!(expo.value(names::ACCEPTS_TOTAL, &[]), Some(41.0));
    assert_eq!(expo.value(names::FRAMES_OUT_TOTAL, &[("kind", "PONG")]), Some(1.0));
}

#[test]
fn healthz_answers_ok() {
    let admin = Admin::start(None);
    let (status, head, body) = get(admin.addr(), "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(header(&head, "connection"), Some("close"));
    // Liveness does not depend on readiness.
    admin.ready.store(false, Ordering::Release);
    assert_eq!(get(admin.addr(), "/healthz").0, 200);
}

#[test]
fn readyz_follows_the_flag() {
    let admin = Admin::start(None);
    let (status, _, body) = get(admin.addr(), "/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    admin.ready.store(false, Ordering::Release); // draining
    let (status, _, body) = get(admin.addr(), "/readyz");
    assert_eq!((status, body.as_str()), (503, "not ready\n"));
    admin.ready.store(true, Ordering::Release);
    assert_eq!(get(admin.addr(), "/readyz").0, 200);
}

#[test]
fn unknown_paths_are_404() {
    let admin = Admin::start(None);
    for path in ["/", "/metric", "/metrics/", "/healthz/x", "/favicon.ico"] {
        assert_eq!(get(admin.addr(), path).0, 404, "{path}");
    }
    let (status, _, _) = http(admin.addr(), "POST /nope HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 404);
}

#[test]
fn other_methods_are_405() {
    let admin = Admin::start(None);
    for method in ["POST", "PUT", "DELETE", "HEAD", "OPTIONS"] {
        for path in ["/metrics", "/healthz", "/readyz"] {
            let (status, head, _) =
                http(admin.addr(), &format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
            assert_eq!(status, 405, "{method} {path}");
            assert_eq!(header(&head, "allow"), Some("GET"));
        }
    }
    // A request body the server never reads does not cost the client its answer.
    let body = "x".repeat(3000);
    let request = format!("POST /metrics HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    assert_eq!(http(admin.addr(), &request).0, 405);
}

#[test]
fn malformed_and_oversized_requests_are_refused() {
    let admin = Admin::start(None);
    assert_eq!(http(admin.addr(), "GET /metrics\r\n\r\n").0, 400);
    assert_eq!(http(admin.addr(), "GET /metrics HTTP/2\r\n\r\n").0, 400);
    assert_eq!(http(admin.addr(), "\r\n\r\n").0, 400);
    let big = format!("GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(16 * 1024));
    assert_eq!(http(admin.addr(), &big).0, 431);
    // The listener still serves afterwards.
    assert_eq!(get(admin.addr(), "/healthz").0, 200);
}

#[test]
fn a_slowloris_client_does_not_block_others() {
    let options = AdminOptions { request_timeout: Duration::from_millis(1500), ..AdminOptions::default() };
    let admin = Admin::start(Some(options));
    let started = Instant::now();
    let stuck = slowloris(admin.addr());
    thread::sleep(Duration::from_millis(50)); // the stuck one is accepted first
    for path in ["/healthz", "/readyz", "/metrics"] {
        let asked = Instant::now();
        assert_eq!(get(admin.addr(), path).0, 200);
        assert!(asked.elapsed() < Duration::from_millis(1000), "{path} waited {:?}", asked.elapsed());
    }
    // The stuck client is cut off at the request deadline with a 408.
    let (status, _, _) = read_all(stuck);
    let waited = started.elapsed();
    assert_eq!(status, 408);
    assert!(waited >= Duration::from_millis(1400) && waited < Duration::from_secs(6), "{waited:?}");
}

#[test]
fn a_dripping_client_meets_the_whole_request_deadline() {
    // One byte every 50 ms keeps every single read under any per-read timeout;
    // the deadline covers the whole head.
    let options = AdminOptions { request_timeout: Duration::from_millis(400), ..AdminOptions::default() };
    let admin = Admin::start(Some(options));
    let mut stream = TcpStream::connect(admin.addr()).unwrap();
    let started = Instant::now();
    let mut cut_off = false;
    for byte in
        b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n"
    {
        if stream.write_all(&[*byte]).is_err() {
            cut_off = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
        if started.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    let mut response = Vec::new();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = stream.read_to_end(&mut response);
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408 ") || (cut_off && text.is_empty()), "{text:?}");
}

#[test]
fn a_new_connection_takes_the_slot_of_one_still_sending_its_request() {
    let options = AdminOptions {
        request_timeout: Duration::from_secs(30),
        max_connections: 1,
        ..AdminOptions::default()
    };
    let admin = Admin::start(Some(options));
    let stuck = slowloris(admin.addr());
    thread::sleep(Duration::from_millis(50));
    let asked = Instant::now();
    assert_eq!(get(admin.addr(), "/healthz").0, 200);
    assert!(asked.elapsed() < Duration::from_secs(2), "healthz took {:?}", asked.elapsed());
    // The slow one was closed without an answer, long before its deadline.
    let mut stuck = stuck;
    stuck.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    let _ = stuck.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn sixteen_slow_clients_do_not_starve_healthz() {
    // Eight slots (the default) and twice as many attackers that keep
    // reconnecting: half send nothing, half drip a byte every 300 ms.
    let admin = Admin::start(None);
    let addr = admin.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..16)
        .map(|i| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut stream) = TcpStream::connect(addr) else { continue };
                    while !stop.load(Ordering::Relaxed) {
                        if i % 2 == 1 && stream.write_all(b"G").is_err() {
                            break;
                        }
                        thread::sleep(Duration::from_millis(300));
                        // Closed (or answered) by the listener: reconnect.
                        let mut byte = [0u8; 1];
                        stream.set_nonblocking(true).unwrap();
                        let gone = !matches!(
                            stream.read(&mut byte),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                        );
                        stream.set_nonblocking(false).unwrap();
                        if gone {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    for _ in 0..10 {
        let asked = Instant::now();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: probe\r\n\r\n").unwrap();
        let (status, _, body) = read_all(stream);
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        assert!(asked.elapsed() < Duration::from_secs(2), "healthz took {:?}", asked.elapsed());
        thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.join().unwrap();
    }
}

#[test]
fn concurrent_scrapes_while_workers_write() {
    let admin = Admin::start(None);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let worker = Arc::clone(admin.registry.worker(0).unwrap());
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                worker.bytes_in.add(10);
                worker.loop_turn.observe(Duration::from_micros(30));
            }
        })
    };
    let addr = admin.addr();
    let scrapers: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || {
                for _ in 0..10 {
                    let (status, _, body) = get(addr, "/metrics");
                    // 503 busy is possible with 4 scrapers and 8 slots only if
                    // slots leak; insist on 200.
                    assert_eq!(status, 200);
                    check_against_names(&parse(&body).unwrap());
                }
            })
        })
        .collect();
    scrapers.into_iter().for_each(|s| s.join().unwrap());
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
}

#[test]
fn shutdown_closes_the_port() {
    let admin = Admin::start(None);
    let addr = admin.addr();
    assert_eq!(get(addr, "/healthz").0, 200);
    let started = Instant::now();
    admin.handle.shutdown();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(TcpStream::connect(addr).is_err(), "still listening after shutdown");
}

#[test]
fn binding_a_used_port_fails() {
    let admin = Admin::start(None);
    let taken = spawn(admin.addr(), Arc::clone(&admin.registry), Arc::clone(&admin.ready));
    assert!(taken.is_err());
}
