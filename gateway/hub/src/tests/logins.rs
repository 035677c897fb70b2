//! Login admission (`logins`): the gate alone (slots, order, the queue's
//! measured wait, the spread of retry hints), then in the hub: HELLOs
//! beyond the worker's login slots wait in order, a full queue refuses
//! before any token check or store work, and a session that leaves gives
//! its place to the next; a closed session's token comes back without its
//! signature check.

use std::time::{Duration, Instant};

use backend_store::{Request, Response, StoreError};
use bytes::Bytes;
use gateway_admin::AuthFailure;
use gateway_core::testing::Out;
use protocol::{Capabilities, CloseCode, DeviceId, ErrorCode, Frame, Hello, Seq, Token};
use routing::SessionRef;

use super::harness::{hub_config, Client, TestNode};
use crate::logins::{Arrival, LoginGate};
use crate::HubConfig;

/// The virtual clock's start (the hub's own code never reads a clock).
fn t0() -> Instant {
    Instant::now()
}

fn hello() -> Box<Hello> {
    Box::new(Hello {
        min_version: 1,
        max_version: 1,
        device: DeviceId(1),
        resume_after: Seq(0),
        capabilities: Capabilities(0),
        token: Token::new(Bytes::from_static(b"token")).unwrap(),
    })
}

fn who(key: usize) -> SessionRef {
    SessionRef { worker: 0, key, generation: key as u64 }
}

fn started(arrival: &Arrival) -> bool {
    matches!(arrival, Arrival::Start(_))
}

#[test]
fn logins_start_up_to_the_bound_then_queue_in_order() {
    let t0 = t0();
    let mut gate = LoginGate::new(2, 10, Duration::from_secs(5), 7);
    assert!(started(&gate.arrive(t0, who(1), hello())));
    assert!(started(&gate.arrive(t0, who(2), hello())));
    assert!(matches!(gate.arrive(t0, who(3), hello()), Arrival::Queued));
    assert!(matches!(gate.arrive(t0, who(4), hello()), Arrival::Queued));
    assert_eq!((gate.in_flight(), gate.queued()), (2, 2));
    assert!(gate.next().is_none(), "nothing starts while the bound is reached");
    gate.finish();
    assert!(gate.has_next());
    assert_eq!(gate.next().map(|(w, _)| w.key), Some(3));
    assert!(!gate.has_next());
    gate.finish();
    assert_eq!(gate.next().map(|(w, _)| w.key), Some(4));
    assert_eq!((gate.in_flight(), gate.queued()), (2, 0));
}

#[test]
fn a_new_hello_does_not_pass_the_queue() {
    let t0 = t0();
    let mut gate = LoginGate::new(1, 10, Duration::from_secs(5), 7);
    assert!(started(&gate.arrive(t0, who(1), hello())));
    assert!(matches!(gate.arrive(t0, who(2), hello()), Arrival::Queued));
    gate.finish();
    // A slot is free, but session 2 waited first.
    assert!(matches!(gate.arrive(t0, who(3), hello()), Arrival::Queued));
    assert_eq!(gate.next().map(|(w, _)| w.key), Some(2));
}

#[test]
fn a_full_queue_refuses_with_a_spread_hint() {
    let t0 = t0();
    let mut gate = LoginGate::new(1, 2, Duration::from_secs(60), 7);
    assert!(started(&gate.arrive(t0, who(1), hello())));
    assert!(matches!(gate.arrive(t0, who(2), hello()), Arrival::Queued));
    assert!(matches!(gate.arrive(t0, who(3), hello()), Arrival::Queued));
    let now = t0 + Duration::from_secs(3);
    let hints: Vec<u32> = (4..100)
        .map(|key| match gate.arrive(now, who(key), hello()) {
            Arrival::Refused { retry_after_ms } => retry_after_ms,
            other => panic!("{other:?}"),
        })
        .collect();
    // The oldest has waited 3 s: hints in [3 s, 6 s], spread.
    assert!(hints.iter().all(|h| (3_000..=6_000).contains(h)), "{hints:?}");
    let (min, max) = (hints.iter().min().unwrap(), hints.iter().max().unwrap());
    assert!(max - min > 1_500, "hints are spread: {min}..{max}");
}

#[test]
fn the_queue_takes_hellos_until_its_oldest_has_waited_max_wait() {
    let t0 = t0();
    let mut gate = LoginGate::new(1, 1_000, Duration::from_secs(5), 7);
    assert!(started(&gate.arrive(t0, who(0), hello())));
    assert!(matches!(gate.arrive(t0, who(1), hello()), Arrival::Queued));
    let at = |secs| t0 + Duration::from_secs(secs);
    assert!(matches!(gate.arrive(at(4), who(2), hello()), Arrival::Queued));
    assert!(matches!(gate.arrive(at(5), who(3), hello()), Arrival::Queued), "5 s is not past 5 s");
    match gate.arrive(at(6), who(4), hello()) {
        Arrival::Refused { retry_after_ms } => assert!((6_000..=12_000).contains(&retry_after_ms)),
        other => panic!("{other:?}"),
    }
    // The oldest starts; the one now at the head arrived at 4 s.
    gate.finish();
    assert_eq!(gate.next().map(|(w, _)| w.key), Some(1));
    assert!(matches!(gate.arrive(at(6), who(5), hello()), Arrival::Queued));
}

/// A node of one worker with `slots` login slots and room for `queue` HELLOs.
fn node(slots: usize, queue: usize) -> TestNode {
    TestNode::with_config(1, HubConfig { max_logins: slots, login_queue: queue, ..hub_config() })
}

/// The users whose Connect is waiting for the store, in call order.
fn connects(node: &TestNode) -> Vec<u64> {
    node.calls
        .iter()
        .filter_map(|(_, call)| match &call.request {
            Request::Connect(connect) => Some(connect.user.0),
            _ => None,
        })
        .collect()
}

/// (logins in flight, HELLOs queued) as the worker's gauges show them.
fn gauges(node: &TestNode) -> (i64, i64) {
    (node.metrics[0].logins_in_flight.get(), node.metrics[0].logins_queued.get())
}

fn authenticated(node: &mut TestNode, client: Client) -> bool {
    node.frames(client).iter().any(|frame| matches!(frame, Frame::AuthOk(_)))
}

#[test]
fn hellos_beyond_the_login_slots_wait_their_turn_and_every_one_logs_in() {
    let mut node = node(2, 8);
    let clients: Vec<Client> = (1..=5).map(|user| node.hello(0, user, 1)).collect();
    assert_eq!(connects(&node), [1, 2], "two logins run; three wait without store work");
    assert_eq!(gauges(&node), (2, 3));
    for (i, client) in clients.iter().enumerate() {
        node.answer_connect(*client, 0);
        assert!(authenticated(&mut node, *client), "client {i} logs in in its turn");
        node.serve_inbox_reads();
        let next = i as u64 + 3;
        if next <= 5 {
            assert!(connects(&node).contains(&next), "user {next} starts when a slot frees");
        }
    }
    assert!(connects(&node).is_empty());
    assert_eq!(gauges(&node), (0, 0));
}

#[test]
fn beyond_the_queue_a_hello_is_refused_with_a_retry_hint_before_its_token_is_checked() {
    let mut node = node(1, 1);
    let first = node.hello(0, 1, 1);
    node.hello(0, 2, 1);
    // Not even a token: a check would refuse it AUTH_FAILED (4003, terminal).
    let third = node.hello_with_token(0, 3, 1, b"not a token".to_vec());
    let out = node.output(third);
    let refusal = out.iter().find_map(|out| match out {
        Out::Frame(Frame::AuthError(error)) => Some(error.clone()),
        _ => None,
    });
    let refusal = refusal.expect("AUTH_ERROR");
    assert_eq!(refusal.code, ErrorCode::OVERLOADED);
    assert!((1_000..=60_000).contains(&refusal.retry_after_ms), "hint {} ms", refusal.retry_after_ms);
    assert!(out.contains(&Out::Close(CloseCode::TRY_AGAIN_LATER.0)), "{out:?}");
    assert_eq!(connects(&node), [1], "no store work for the refused one");
    let failures = &node.metrics[0].auth_failures;
    assert_eq!(failures.get(AuthFailure::Overloaded), 1);
    assert_eq!(failures.get(AuthFailure::Malformed) + failures.get(AuthFailure::BadSignature), 0);
    // The queue did not lose its place: the second logs in after the first.
    node.answer_connect(first, 0);
    node.serve_inbox_reads();
    assert_eq!(connects(&node), [2]);
}

#[test]
fn a_session_gone_while_it_waits_or_logs_in_gives_its_place_to_the_next() {
    let mut node = node(1, 8);
    let first = node.hello(0, 1, 1);
    let waiting = node.hello(0, 2, 1);
    node.hello(0, 3, 1);
    node.hello(0, 4, 1);
    node.disconnect(waiting);
    // The store refuses the first login: its session closes, its slot frees.
    let call = node.take_call(|r| matches!(r, Request::Connect(c) if c.user.0 == 1));
    node.answer(call, Err(StoreError::Overloaded));
    assert!(node.output(first).contains(&Out::Close(CloseCode::TRY_AGAIN_LATER.0)));
    assert_eq!(connects(&node), [3], "the one that left is skipped");
    assert_eq!(gauges(&node).0, 1);
    let call = node.take_call(|r| matches!(r, Request::Connect(c) if c.user.0 == 3));
    node.answer(call, Ok(Response::Done));
    assert_eq!(connects(&node), [4], "a login the store failed frees its slot too");
    assert_eq!(gauges(&node), (1, 0));
}

#[test]
fn a_login_holds_its_slot_until_the_store_answers_its_connect() {
    let mut node = node(1, 8);
    let first = node.hello(0, 1, 1);
    node.hello(0, 2, 1);
    assert_eq!(connects(&node), [1]);
    node.answer_connect(first, 3);
    // Its sync has not even started being read: the store's part of the
    // login (the device's registration) is done, the next one starts.
    assert!(node.has_call(|r| matches!(r, Request::Inbox(q) if q.user == first.user)));
    assert_eq!(connects(&node), [2]);
}

#[test]
fn a_hello_that_timed_out_while_it_waited_does_not_start() {
    let mut node = node(1, 8);
    let first = node.hello(0, 1, 1);
    let late = node.hello(0, 2, 1);
    node.advance(Duration::from_secs(11));
    node.hubs[0].handle_session_timeout(node.now, late.key);
    node.turn();
    assert!(node.output(late).contains(&Out::Close(CloseCode::AUTH_TIMEOUT.0)));
    // Its session lingers (closing); its turn comes and is skipped.
    node.answer_connect(first, 0);
    assert!(connects(&node).is_empty(), "no store work for a login already refused");
    assert_eq!(gauges(&node), (0, 0));
}

fn auth_error(node: &mut TestNode, client: Client) -> Option<ErrorCode> {
    node.frames(client).iter().find_map(|frame| match frame {
        Frame::AuthError(error) => Some(error.code),
        _ => None,
    })
}

/// A session that closes leaves its token's fingerprint: the same token
/// comes back without its signature check, once (counted in
/// `gateway_recent_tokens_total`); the device is checked every time, and
/// a login the store refused leaves its token too (for the client's retry).
#[test]
fn a_closed_sessions_token_comes_back_without_its_signature_check_once() {
    let mut node = TestNode::new(1);
    let recent = |node: &TestNode| node.metrics[0].recent_tokens.get();
    let token = node.token(7, 1);
    let first = node.hello_with_token(0, 7, 1, token.clone());
    node.answer_connect(first, 0);
    assert!(authenticated(&mut node, first));
    assert_eq!(recent(&node), 0, "a first login checks the signature");
    node.disconnect(first);

    let again = node.hello_with_token(0, 7, 1, token.clone());
    assert_eq!(recent(&node), 1);
    node.answer_connect(again, 0);
    assert!(authenticated(&mut node, again));
    node.disconnect(again);

    let other_device = node.hello_with_token(0, 7, 2, token.clone());
    assert_eq!(auth_error(&mut node, other_device), Some(ErrorCode::AUTH_DEVICE_MISMATCH));
    assert_eq!(recent(&node), 1);
    // That HELLO used the fingerprint up: the next one is checked in full.
    let full = node.hello_with_token(0, 7, 1, token.clone());
    assert_eq!(recent(&node), 1);
    // The store refuses this login: the client will retry with its token.
    let call = node.take_call(|r| matches!(r, Request::Connect(c) if c.user.0 == 7));
    node.answer(call, Err(StoreError::Overloaded));
    assert!(node.output(full).contains(&Out::Close(CloseCode::TRY_AGAIN_LATER.0)));
    node.disconnect(full);
    node.hello_with_token(0, 7, 1, token);
    assert_eq!(recent(&node), 2, "the retry after a refused login skips the check");
}

/// A session replaced by a newer connection of its device (4007) leaves
/// its token at once: its close no longer carries an identity.
#[test]
fn a_replaced_sessions_token_is_remembered() {
    let mut node = TestNode::new(1);
    let recent = |node: &TestNode| node.metrics[0].recent_tokens.get();
    let first = node.login(0, 7, 1, 0);
    let newer = node.hello(0, 7, 2);
    node.answer_connect(newer, 0);
    assert_eq!(recent(&node), 0);
    // The same device again, with a token minted now (the first's bytes).
    let token = node.token(7, 1);
    let second = node.hello_with_token(0, 7, 1, token.clone());
    node.answer_connect(second, 0);
    assert!(node.output(first).contains(&Out::Close(CloseCode::REPLACED.0)));
    assert_eq!(recent(&node), 0, "the first was still live: checked in full");
    node.hello_with_token(0, 7, 1, token);
    assert_eq!(recent(&node), 1, "replaced: its token was remembered");
}

/// The set is the node's: a session that closed on one worker comes back
/// through another (the listeners share the port) and still skips the check.
#[test]
fn a_token_comes_back_through_another_worker() {
    let mut node = TestNode::new(2);
    let token = node.token(7, 1);
    let first = node.hello_with_token(0, 7, 1, token.clone());
    node.answer_connect(first, 0);
    node.disconnect(first);
    let again = node.hello_with_token(1, 7, 1, token);
    assert_eq!((node.metrics[0].recent_tokens.get(), node.metrics[1].recent_tokens.get()), (0, 1));
    node.answer_connect(again, 0);
    assert!(authenticated(&mut node, again));
}
