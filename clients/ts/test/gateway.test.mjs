// The TypeScript client against a real gateway node (target/debug/gateway,
// or GATEWAY_BIN) over Node's standard WebSocket: chat with receipts,
// typing and presence, resume after the client and the node went away
// (drain and kill -9) with every message exactly once, a bad token's
// terminal close, groups, batching, and the next URL when a node is down.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Backoff, GatewayClient, StatusTracker } from '../dist/index.js';
import { mintToken } from '../tools/dev-token.mjs';
import { freePort, GatewayNode } from '../tools/gateway-node.mjs';

if (typeof WebSocket !== 'function') throw new Error('no global WebSocket: run with node --experimental-websocket (Node 20) or Node ≥ 22');

const text = (s) => new TextEncoder().encode(s);
const str = (bytes) => new TextDecoder().decode(bytes);
const DRAIN = '[drain]\nwindow_ms = 200\ndeadline_ms = 2000\n';

let node;
before(async () => {
  node = await new GatewayNode({ config: DRAIN }).start();
});
after(async () => {
  await node?.stop();
});

/** A client for `user` that records every event; `waitFor` polls the record. */
function connect(user, options = {}) {
  const device = options.device ?? 1;
  const client = new GatewayClient({
    urls: options.urls ?? node.url,
    token: options.token ?? (() => mintToken(node.key, { user, device })),
    device,
    backoff: new Backoff(50, 400),
    ...options,
  });
  const events = [];
  client.on((event) => events.push(event));
  client.start();
  const waitFor = async (what, predicate, timeoutMs = 15_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = events.find(predicate);
      if (found) return found;
      if (Date.now() > deadline) {
        throw new Error(`user ${user}: no ${what} within ${timeoutMs} ms; events: ${events.map((e) => e.type + (e.state ? `:${e.state}` : '')).join(' ')}\n${node.logTail(10)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const delivered = () => events.filter((e) => e.type === 'delivered').map((e) => str(e.message.payload));
  return { client, events, waitFor, delivered, live: () => waitFor('live state', (e) => e.type === 'state' && e.state === 'live') };
}

test('two users chat: delivered once, ✓ stored, ✓✓ delivered, read; typing and presence', async () => {
  const a = connect(101n);
  const b = connect(102n);
  await Promise.all([a.live(), b.live()]);
  a.client.presenceSubscribe(102n);
  await a.waitFor('presence online', (e) => e.type === 'presence' && e.presence.user === 102n && e.presence.status === 'online');

  const tracker = new StatusTracker(101n);
  const statuses = [];
  a.client.on((event) => statuses.push(...tracker.handle(event).map((c) => c.status)));
  const id = a.client.send({ user: 102n }, text('hello b'));
  tracker.track(id, { user: 102n });
  const got = await b.waitFor('the message', (e) => e.type === 'delivered');
  assert.equal(str(got.message.payload), 'hello b');
  assert.deepEqual(got.message.conversation, { user: 101n });
  assert.equal(got.message.sender, 101n);
  await a.waitFor('✓✓', () => statuses.includes('delivered'));
  b.client.read({ user: 101n }, got.message.conv_seq);
  await a.waitFor('read', () => statuses.includes('read'));
  assert.deepEqual(statuses, ['stored', 'delivered', 'read']);

  b.client.typing({ user: 101n }, true);
  const typing = await a.waitFor('typing', (e) => e.type === 'typing');
  assert.deepEqual([typing.typing.user, typing.typing.active], [102n, true]);

  b.client.stop();
  await a.waitFor('presence offline', (e) => e.type === 'presence' && e.presence.status === 'offline');
  assert.deepEqual(b.delivered(), ['hello b']);
  a.client.stop();
});

test('a client that was away resumes and gets what it missed exactly once', async () => {
  const a = connect(201n);
  const b = connect(202n);
  await Promise.all([a.live(), b.live()]);
  a.client.send({ user: 202n }, text('m0'));
  await b.waitFor('m0', (e) => e.type === 'delivered');
  b.client.stop();
  for (let i = 1; i <= 5; i++) a.client.send({ user: 202n }, text(`m${i}`));
  await a.waitFor('the fifth SEND_ACK', () => a.events.filter((e) => e.type === 'sent').length === 6);
  b.client.start();
  await b.waitFor('m5', (e) => e.type === 'delivered' && str(e.message.payload) === 'm5');
  await b.waitFor('sync done', (e) => e.type === 'synced');
  assert.deepEqual(b.delivered(), ['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
  a.client.stop();
  b.client.stop();
});

test('the node drains (GOAWAY) and is killed (kill -9) under traffic: every acknowledged message arrives once', async () => {
  const a = connect(301n);
  const b = connect(302n);
  await Promise.all([a.live(), b.live()]);
  let sent = 0;
  const sendSome = (n) => {
    for (let i = 0; i < n; i++) a.client.send({ user: 302n }, text(`n${sent++}`));
  };
  sendSome(10);
  await b.waitFor('the first ten', () => b.delivered().length >= 10);

  // Drain: GOAWAY, close 1001; sends made while the node is gone stay pending.
  await node.stop();
  await a.waitFor('GOAWAY', (e) => e.type === 'goaway');
  sendSome(10);
  await node.start();
  await b.waitFor('twenty', () => b.delivered().length >= 20);

  // kill -9 with sends in flight: unacknowledged ones are resent with their ids.
  sendSome(10);
  await node.kill();
  sendSome(10);
  await node.start();
  await b.waitFor('forty', () => b.delivered().length >= 40, 30_000);
  await a.waitFor('all acknowledged', () => a.client.session.pending.length === 0, 30_000);
  await new Promise((r) => setTimeout(r, 300));
  const expected = Array.from({ length: 40 }, (_, i) => `n${i}`);
  assert.deepEqual(b.delivered(), expected, 'in order, none lost, none twice');
  assert.ok(a.events.some((e) => e.type === 'disconnected' && e.code === 1001 && e.action === 'resumable'));
  a.client.stop();
  b.client.stop();
});

test('a bad token gets AUTH_ERROR and the terminal close 4003; the client stops', async () => {
  const bad = connect(401n, { token: 'v1.not-a-token' });
  const rejected = await bad.waitFor('auth_rejected', (e) => e.type === 'auth_rejected');
  assert.equal(rejected.code, 110);
  const closed = await bad.waitFor('disconnected', (e) => e.type === 'disconnected');
  assert.deepEqual([closed.code, closed.action, closed.retryInMs], [4003, 'terminal', null]);
  await bad.waitFor('stopped', (e) => e.type === 'state' && e.state === 'stopped');
  assert.equal(bad.client.state, 'stopped');
});

test('groups: create, send to all members, read the membership', async () => {
  const [a, b, c] = [connect(501n), connect(502n), connect(503n)];
  await Promise.all([a.live(), b.live(), c.live()]);
  const ok = await a.client.groupCreate('team ☕', [502n, 503n]);
  a.client.send({ group: ok.group }, text('hi team'));
  for (const member of [b, c]) {
    await member.waitFor('the group message', (e) => e.type === 'delivered' && str(e.message.payload) === 'hi team');
  }
  const info = await b.client.groupGet(ok.group);
  assert.equal(info.name, 'team ☕');
  assert.deepEqual(info.members.map((m) => m.user).sort(), [501n, 502n, 503n]);
  await assert.rejects(c.client.groupGet(999999n), (err) => err.name === 'RequestRefused' && err.error.code === 300);
  for (const x of [a, b, c]) x.client.stop();
});

test('the frames of one turn leave in one WebSocket message', async () => {
  const sends = [];
  class CountingWebSocket extends WebSocket {
    send(data) {
      sends.push(data.length);
      super.send(data);
    }
  }
  const a = connect(601n, { WebSocket: CountingWebSocket });
  const b = connect(602n);
  await Promise.all([a.live(), b.live()]);
  await new Promise((r) => setTimeout(r, 100));
  const before = sends.length;
  for (let i = 0; i < 50; i++) a.client.send({ user: 602n }, text(`b${i}`));
  await b.waitFor('fifty', () => b.delivered().length === 50);
  assert.equal(sends.length - before, 1, 'fifty SENDs, one message');
  a.client.stop();
  b.client.stop();
});

test('a node that is down gives way to the next URL of the list', async () => {
  const dead = `ws://127.0.0.1:${await freePort()}/ws`;
  const a = connect(701n, { urls: [dead, node.url] });
  await a.live();
  const live = a.events.find((e) => e.type === 'state' && e.state === 'live');
  assert.equal(live.url, node.url);
  assert.ok(a.events.some((e) => e.type === 'disconnected' && e.code === 1006));
  a.client.stop();
});
