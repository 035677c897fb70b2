// What the encoder refuses: values outside their SPEC type, fields and lists
// over their limits, frames over MAX_FRAME_LEN. A refused frame leaves
// nothing behind in the encoder.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeMessage, EncodeError, Encoder, Limits } from '../dist/index.js';

const ping = { type: 'PING', nonce: 1n };
const refuses = (frame, pattern) => assert.throws(() => new Encoder().encode([frame]), (e) => e instanceof EncodeError && pattern.test(e.message));

test('varints: negative, above 2^64 − 1 and non-bigint values are refused; 2^64 − 1 is not', () => {
  refuses({ type: 'PING', nonce: -1n }, /nonce/);
  refuses({ type: 'PING', nonce: 1n << 64n }, /nonce/);
  refuses({ type: 'PING', nonce: 1 }, /nonce/);
  const max = (1n << 64n) - 1n;
  assert.deepStrictEqual(decodeMessage(new Encoder().encode([{ type: 'PING', nonce: max }])), [{ type: 'PING', nonce: max }]);
});

test('u32, u16 code and u8 fields are range-checked', () => {
  refuses({ type: 'PREKEY_LOW', stock: 2 ** 32 }, /stock/);
  refuses({ type: 'PREKEY_LOW', stock: 1.5 }, /stock/);
  refuses({ type: 'SEND_ERROR', client_id: 1n, code: 65536, retry_after_ms: 0, text: '' }, /code/);
  refuses({ type: 'AUTH_OK', version: 256, user: 1n, device: 1, session: 1n, server_time: 0n, heartbeat_ms: 1, inbox_head: 0n, max_payload: 1, capabilities: 0n }, /version/);
});

test('enums take only their SPEC names', () => {
  refuses({ type: 'PRESENCE_SET', visibility: 'friends' }, /visibility/);
  refuses({ type: 'PRESENCE_SET', visibility: 'toString' }, /visibility/);
});

test('bytes, text and lists over their limits are refused', () => {
  refuses({ type: 'HELLO', min_version: 1, max_version: 1, device: 1, resume_after: 0n, capabilities: 0n, token: new Uint8Array(Limits.MAX_TOKEN + 1) }, /token/);
  refuses({ type: 'GROUP_CREATE', request: 1n, name: 'x'.repeat(Limits.MAX_GROUP_NAME + 1), members: [] }, /name/);
  // Over the limit in UTF-8 bytes, under it in UTF-16 units.
  refuses({ type: 'GROUP_CREATE', request: 1n, name: '☕'.repeat(43), members: [] }, /name/);
  refuses({ type: 'GROUP_ADD', request: 1n, group: 1n, members: Array(Limits.MAX_MEMBERS_PER_CHANGE + 1).fill(1n) }, /members/);
});

test('a lone surrogate is refused rather than sent as U+FFFD', () => {
  refuses({ type: 'GROUP_CREATE', request: 1n, name: 'a\uD800', members: [] }, /name/);
});

test('a conversation must name a user or a group', () => {
  refuses({ type: 'READ', conversation: { channel: 1n }, up_to: 1n }, /conversation/);
});

test('a frame body over MAX_FRAME_LEN is refused; one at the limit is not', () => {
  const overhead = 3; // client_id 1, Direct tag, user 2
  const payloadLen = (n) => n - overhead - 3; // a 3-byte length prefix
  const at = { type: 'SEND', client_id: 1n, to: { user: 2n }, payload: new Uint8Array(payloadLen(Limits.MAX_FRAME_LEN)) };
  assert.equal(new Encoder().encode([at]).length, 1 + 3 + Limits.MAX_FRAME_LEN);
  refuses({ ...at, payload: new Uint8Array(payloadLen(Limits.MAX_FRAME_LEN) + 1) }, /MAX_FRAME_LEN/);
});

test('an unknown frame type is refused', () => {
  refuses({ type: 'NOPE' }, /type/);
});

test('a refused frame leaves the frames before it intact for the next call', () => {
  const encoder = new Encoder();
  assert.throws(() => encoder.encode([ping, { type: 'PING', nonce: -1n }]));
  assert.deepStrictEqual(decodeMessage(encoder.encode([ping])), [ping]);
});

test('length prefixes of 1, 2 and 3 bytes move the body into place', () => {
  for (const n of [0, 120, 127, 128, 5000, 16383, 16384, 70000]) {
    const frame = { type: 'SEND', client_id: 9n, to: { group: 5n }, payload: new Uint8Array(n).map((_, i) => i) };
    assert.deepStrictEqual(decodeMessage(new Encoder().encode([ping, frame, ping])), [ping, frame, ping]);
  }
});

test('text is written in place: its length prefix may be shorter than the room kept for it, or as long', () => {
  // 43 ASCII units keep room for 129 bytes (a 2-byte prefix) and need 1 byte;
  // 43 three-byte units need 2; 2- and 4-byte UTF-8 mixed with ASCII in between.
  for (const name of ['', 'a', 'x'.repeat(43), 'é'.repeat(60), '☕'.repeat(42), `a😀b${'ü'.repeat(20)}c`]) {
    const frame = { type: 'GROUP_CREATE', request: 3n, name, members: [1n, 2n] };
    const [again] = decodeMessage(new Encoder().encode([frame]));
    assert.deepStrictEqual(again, frame);
    assert.equal(new TextEncoder().encode(again.name).length, new TextEncoder().encode(name).length);
  }
});
