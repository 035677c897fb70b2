//! The pipeline between a real `RemoteStore` and a real `StoreService` (in
//! this process, over TCP) serving a fake store that records the order of its
//! calls and can hold or drop a request: call order kept per caller, request
//! deadlines with late replies dropped, a `Done` the store dropped, and the
//! service's graceful close.

// Integration tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use backend_rpc::{RemoteStore, RemoteStoreConfig, StoreService};
use backend_store::{Done, EngineError, GrpcCode, Request, Response, StoreApi, StoreError, UnavailableError};
use protocol::{UserId, Visibility};
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

/// Requests for this user are held until the test answers them.
const HOLD: u64 = u64::MAX;
/// Requests for this user are dropped unanswered (a store bug).
const DROP: u64 = u64::MAX - 1;

/// Answers `GetVisibility` at once (except `HOLD` and `DROP`), recording the
/// users in call order.
#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<u64>>,
    held: Mutex<Vec<Done>>,
}

impl std::fmt::Debug for Fake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fake").finish_non_exhaustive()
    }
}

impl StoreApi for Fake {
    fn writable(&self) -> bool {
        true
    }

    fn call(&self, request: Request, done: Done) {
        let Request::GetVisibility { user } = request else {
            done(Err(StoreError::Engine(EngineError::Reported {
                message: "the fake only knows GetVisibility".into(),
            })));
            return;
        };
        self.seen.lock().unwrap().push(user.0);
        match user.0 {
            HOLD => self.held.lock().unwrap().push(done),
            DROP => drop(done),
            _ => done(Ok(Response::Visibility(Visibility::Everyone))),
        }
    }
}

/// The fake behind a `StoreService` on a runtime of the test's own.
struct Served {
    fake: Arc<Fake>,
    service: StoreService,
    endpoint: String,
    _runtime: tokio::runtime::Runtime,
}

fn serve() -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let fake = Arc::new(Fake::default());
    let service = StoreService::new(Arc::clone(&fake) as Arc<dyn StoreApi>);
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = Server::builder()
        .add_service(service.clone().into_server(1 << 20))
        .serve_with_incoming(TcpIncoming::from(listener));
    runtime.spawn(server);
    Served { fake, service, endpoint, _runtime: runtime }
}

fn client(endpoint: &str, request_timeout: Duration) -> RemoteStore {
    let mut config = RemoteStoreConfig::new(endpoint);
    config.request_timeout = request_timeout;
    RemoteStore::start(config).unwrap()
}

fn ask(user: u64) -> Request {
    Request::GetVisibility { user: UserId(user) }
}

/// Starts a call; the receiver gets its outcome.
fn start(store: &RemoteStore, request: Request) -> mpsc::Receiver<Result<Response, StoreError>> {
    let (tx, rx) = mpsc::channel();
    store.call(
        request,
        Box::new(move |outcome| {
            let _ = tx.send(outcome);
        }),
    );
    rx
}

fn call(store: &RemoteStore, request: Request) -> Result<Response, StoreError> {
    start(store, request).recv_timeout(Duration::from_secs(10)).expect("an answer within 10 s")
}

/// Waits until `held` requests are held by the fake.
fn wait_held(fake: &Fake, held: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.held.lock().unwrap().len() < held {
        assert!(Instant::now() < deadline, "the request never reached the store");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn each_callers_requests_reach_the_store_in_call_order() {
    let served = serve();
    let store = client(&served.endpoint, Duration::from_secs(5));
    // Four threads calling at once, 1000 requests each, none waiting.
    let threads: Vec<_> = (0..4u64)
        .map(|thread| {
            let store = store.clone();
            std::thread::spawn(move || {
                let (tx, answers) = mpsc::channel();
                for i in 0..1_000 {
                    let tx = tx.clone();
                    store.call(
                        ask(thread * 1_000_000 + i),
                        Box::new(move |outcome| {
                            let _ = tx.send(outcome);
                        }),
                    );
                }
                drop(tx);
                answers.iter().filter(|outcome| outcome.is_ok()).count()
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 1_000);
    }
    // The store saw every request once, and each thread's in its call order.
    let seen = served.fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 4_000);
    for thread in 0..4 {
        let own: Vec<u64> = seen.iter().copied().filter(|user| user / 1_000_000 == thread).collect();
        let called: Vec<u64> = (0..1_000).map(|i| thread * 1_000_000 + i).collect();
        assert_eq!(own, called, "thread {thread}");
    }
    let stats = store.stats();
    assert_eq!((stats.answered, stats.in_flight, stats.stream_failures), (4_000, 0, 0));
}

#[test]
fn a_request_past_its_deadline_is_unavailable_and_its_late_reply_dropped() {
    let served = serve();
    let store = client(&served.endpoint, Duration::from_millis(300));
    assert!(call(&store, ask(1)).is_ok());

    let started = Instant::now();
    match call(&store, ask(HOLD)) {
        Err(StoreError::Unavailable(why)) => {
            assert!(matches!(why, UnavailableError::Timeout { timeout_ms: 300 }), "{why}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The store answers late: the reply arrives and is dropped.
    let late = served.fake.held.lock().unwrap().pop().unwrap();
    late(Ok(Response::Visibility(Visibility::Nobody)));
    // The stream is still open and in order.
    for user in 2..20 {
        assert!(matches!(call(&store, ask(user)), Ok(Response::Visibility(Visibility::Everyone))));
    }
    let stats = store.stats();
    assert_eq!((stats.unavailable, stats.in_flight, stats.stream_failures), (1, 0, 0));
}

#[test]
fn a_request_the_store_dropped_is_unavailable_at_once() {
    let served = serve();
    let store = client(&served.endpoint, Duration::from_secs(5));
    let started = Instant::now();
    match call(&store, ask(DROP)) {
        Err(StoreError::Unavailable(why)) => {
            assert!(matches!(why, UnavailableError::Status { code: GrpcCode::Internal, .. }), "{why}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "waited for the deadline");
    assert!(call(&store, ask(1)).is_ok());
    assert_eq!(store.stats().stream_failures, 0);
}

#[test]
fn closing_the_service_answers_what_it_read_then_ends_the_stream() {
    let served = serve();
    let store = client(&served.endpoint, Duration::from_secs(5));
    assert!(call(&store, ask(1)).is_ok());
    let held = start(&store, ask(HOLD));
    wait_held(&served.fake, 1);

    served.service.close();
    // The request it read before closing still gets its answer.
    let answer = served.fake.held.lock().unwrap().pop().unwrap();
    answer(Ok(Response::Visibility(Visibility::Nobody)));
    assert!(matches!(
        held.recv_timeout(Duration::from_secs(10)).unwrap(),
        Ok(Response::Visibility(Visibility::Nobody))
    ));
    // Then the stream ends; the client notices and later calls are refused
    // (a closed service ends new streams at once), each answered once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().stream_failures == 0 {
        assert!(Instant::now() < deadline, "the stream did not end");
        std::thread::sleep(Duration::from_millis(5));
    }
    for user in 2..5 {
        assert!(matches!(call(&store, ask(user)), Err(StoreError::Unavailable(_))));
        std::thread::sleep(Duration::from_millis(60));
    }
    assert_eq!(store.stats().in_flight, 0);
}
