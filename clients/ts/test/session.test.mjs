// The sans-IO session core: the delivery contract without a socket (SPEC §4,
// §6): dedup across connections, cumulative acks, resends with the same
// client ids, GOAWAY's cursor, states and request ids; and the backoff.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff, closeAction, Session, StatusTracker, UnexpectedFrame, jittered } from '../dist/index.js';

const authOk = (device = 2) => ({
  type: 'AUTH_OK', version: 1, user: 1001n, device, session: 1n, server_time: 0n,
  heartbeat_ms: 30000, inbox_head: 0n, max_payload: 65536, capabilities: 15n,
});
const entry = (seq) => ({
  seq, message_id: seq * 10n, conversation: { user: 7n }, conv_seq: seq, sender: 7n,
  sender_device: 1, server_time: 0n, payload: new Uint8Array([Number(seq)]),
});
const deliver = (seq) => ({ type: 'DELIVER', ...entry(seq) });
const events = (session) => {
  const out = [];
  for (let e = session.pollEvent(); e; e = session.pollEvent()) out.push(e);
  return out;
};
const live = (options = {}) => {
  const session = new Session({ device: 2, token: new Uint8Array([1]), capabilities: 15n, ...options });
  session.handleFrame(authOk());
  return session;
};

test('HELLO carries the device, capabilities, token and the acked cursor', () => {
  const session = new Session({ device: 2, token: new Uint8Array([7]), capabilities: 5n, resumeAfter: 300n });
  assert.deepStrictEqual(session.hello(), {
    type: 'HELLO', min_version: 1, max_version: 1, device: 2, resume_after: 300n, capabilities: 5n, token: new Uint8Array([7]),
  });
});

test('only AUTH_OK, AUTH_ERROR and ERROR before AUTH_OK; no second AUTH_OK; no client kinds', () => {
  const session = new Session({ device: 2, token: new Uint8Array(), capabilities: 0n });
  assert.throws(() => session.handleFrame(deliver(1n)), UnexpectedFrame);
  assert.throws(() => session.handleFrame(authOk(3)), /another device/);
  session.handleFrame(authOk());
  assert.throws(() => session.handleFrame(authOk()), /already authenticated/);
  assert.throws(() => session.handleFrame({ type: 'ACK', up_to: 1n }), /client-to-server/);
});

test('deliveries surface once and in seq order, across a live delivery racing a sync', () => {
  const session = live();
  session.handleFrame(deliver(1n));
  session.handleFrame(deliver(2n));
  session.handleFrame({ type: 'SYNC_BATCH', remaining: 0n, entries: [entry(1n), entry(2n), entry(3n)] });
  session.handleFrame(deliver(3n));
  const got = events(session);
  assert.deepStrictEqual(got.filter((e) => e.type === 'delivered').map((e) => e.message.seq), [1n, 2n, 3n]);
  assert.deepStrictEqual(got.find((e) => e.type === 'sync_progress'), { type: 'sync_progress', remaining: 0n, up_to: 3n });
  assert.equal(session.duplicatesDropped, 3);
});

test('acks are cumulative, clamped to what was surfaced, and move the next HELLO', () => {
  const session = live();
  session.handleFrame(deliver(5n));
  assert.equal(session.ack(5n), undefined, 'nothing surfaced yet');
  events(session);
  assert.deepStrictEqual(session.ack(9n), { type: 'ACK', up_to: 5n });
  assert.equal(session.ack(4n), undefined);
  session.onDisconnect();
  assert.equal(session.hello().resume_after, 5n);
});

test('pending sends survive a disconnect and are resent with their client ids; SEND_ACK ends them', () => {
  const session = live({ firstClientId: 100n });
  const a = session.send({ user: 7n }, new Uint8Array([1]));
  const b = session.send({ group: 5n }, new Uint8Array([2]));
  assert.deepStrictEqual([a.client_id, b.client_id], [100n, 101n]);
  session.onDisconnect();
  assert.deepStrictEqual(session.resendPending().map((f) => f.client_id), [100n, 101n]);
  session.handleFrame(authOk());
  session.handleFrame({ type: 'SEND_ACK', client_id: 100n, message_id: 1n, conv_seq: 1n, server_time: 0n, duplicate: true });
  session.handleFrame({ type: 'SEND_ERROR', client_id: 101n, code: 501, retry_after_ms: 10, text: 'busy' });
  assert.deepStrictEqual(session.pending.map((p) => p.client_id), [101n], 'OVERLOADED is retryable: still pending');
  session.handleFrame({ type: 'SEND_ERROR', client_id: 101n, code: 202, retry_after_ms: 0, text: 'not a member' });
  assert.equal(session.pending.length, 0, 'NOT_A_MEMBER is terminal');
  assert.deepStrictEqual(events(session).map((e) => e.type), ['authenticated', 'authenticated', 'sent', 'send_failed', 'send_failed']);
});

test('GOAWAY raises the cursor to the server record', () => {
  const session = live({ resumeAfter: 3n });
  session.handleFrame({ type: 'GOAWAY', reason: 'drain', reconnect_after_ms: 100, resume_after: 8n, redirect: '' });
  assert.equal(session.acked, 8n);
  session.handleFrame(deliver(8n));
  assert.ok(!events(session).some((e) => e.type === 'delivered'), 'seq 8 is covered by the server record');
});

test('a server PING is answered with a PONG of the same nonce', () => {
  const session = live();
  session.handleFrame({ type: 'PING', nonce: 77n });
  assert.deepStrictEqual(session.pollTransmit(), { type: 'PONG', nonce: 77n });
  assert.equal(session.pollTransmit(), undefined);
});

test('request ids are never 0 and unique while outstanding; answers and ERRORs end them; a disconnect forgets them', () => {
  const session = live();
  const a = session.groupCreate('team', [2n]);
  const b = session.groupGet(5n);
  assert.notEqual(a.request, 0n);
  assert.notEqual(a.request, b.request);
  assert.equal(session.outstanding, 2);
  session.handleFrame({ type: 'GROUP_OK', request: a.request, group: 5n, version: 1n });
  session.handleFrame({ type: 'ERROR', code: 300, retryable: false, retry_after_ms: 0, reference: b.request, text: '' });
  assert.equal(session.outstanding, 0);
  session.groupLeave(5n);
  session.onDisconnect();
  assert.equal(session.outstanding, 0);
});

test('presence subscriptions are repeated after a reconnect, unsubscribed ones are not', () => {
  const session = live();
  session.presenceSubscribe(7n);
  session.presenceSubscribe(8n);
  session.presenceUnsubscribe(7n);
  assert.deepStrictEqual(session.resubscribePresence(), [{ type: 'PRESENCE_SUBSCRIBE', user: 8n }]);
});

test('close codes: the SPEC table, then unknown 4xxx terminal and other unknown codes resumable', () => {
  assert.equal(closeAction(1001), 'resumable');
  assert.equal(closeAction(4003), 'terminal');
  assert.equal(closeAction(4004), 'new_token');
  assert.equal(closeAction(4999), 'terminal');
  assert.equal(closeAction(1006), 'resumable');
  assert.equal(closeAction(3000), 'resumable');
});

test('backoff: within [d/2, d], doubling to the cap, never below the floor, reset to the first step', () => {
  const low = new Backoff(1000, 8000, () => 0);
  const high = new Backoff(1000, 8000, () => 0.999999);
  assert.deepStrictEqual([1, 2, 3, 4, 5].map(() => low.next()), [500, 1000, 2000, 4000, 4000]);
  assert.deepStrictEqual([1, 2, 3, 4, 5].map(() => high.next()), [1000, 2000, 4000, 8000, 8000]);
  assert.equal(low.next(30000), 30000);
  assert.equal(high.next(30000), 33000);
  low.reset();
  assert.equal(low.next(), 500);
  assert.equal(jittered(1000, () => 0), 900);
  assert.equal(jittered(1000, () => 0.999999), 1100);
});

test('status: pending → stored → delivered → read from SEND_ACK and receipts, in any order', () => {
  const tracker = new StatusTracker(1001n);
  tracker.track(1n, { user: 7n });
  tracker.track(2n, { user: 7n });
  // A receipt that overtakes the SEND_ACK still counts.
  const receipt = (kind, up_to, user = 7n) => ({ type: 'receipt', receipt: { type: 'RECEIPT', conversation: { user: 7n }, user, kind, up_to, at: 0n } });
  assert.deepStrictEqual(tracker.handle(receipt('delivered', 4n)), []);
  const sent = (client_id, conv_seq) => ({ type: 'sent', client_id, message_id: 1n, conv_seq, server_time: 0n, duplicate: false });
  assert.deepStrictEqual(tracker.handle(sent(1n, 4n)).map((c) => c.status), ['delivered']);
  assert.deepStrictEqual(tracker.handle(sent(2n, 5n)).map((c) => c.status), ['stored']);
  assert.deepStrictEqual(tracker.handle(receipt('read', 5n, 1001n)), [], 'my own other device says nothing');
  assert.deepStrictEqual(tracker.handle(receipt('read', 5n)).map((c) => [c.client_id, c.status]), [[1n, 'read'], [2n, 'read']]);
  assert.equal(tracker.size, 0);
});

test('status in a group: ✓✓ only once every other member has it', () => {
  const tracker = new StatusTracker(1n);
  tracker.track(9n, { group: 5n });
  tracker.handle({ type: 'sent', client_id: 9n, message_id: 1n, conv_seq: 3n, server_time: 0n, duplicate: false });
  assert.deepStrictEqual(tracker.setGroupMembers(5n, [1n, 2n, 3n]), []);
  const receipt = (user) => ({ type: 'receipt', receipt: { type: 'RECEIPT', conversation: { group: 5n }, user, kind: 'delivered', up_to: 3n, at: 0n } });
  assert.deepStrictEqual(tracker.handle(receipt(2n)), []);
  assert.deepStrictEqual(tracker.handle(receipt(3n)).map((c) => c.status), ['delivered']);
});
