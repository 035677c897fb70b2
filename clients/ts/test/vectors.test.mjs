// Every frame vector of protocol/testdata/vectors.json encodes to its hex
// byte for byte and decodes back to its frames; every malformed vector fails
// with its §13 error (SPEC §15).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { CLIENT_MESSAGE_LIMITS, decodeMessage, DecodeError, encodeMessage } from '../dist/index.js';

const schema = JSON.parse(readFileSync(new URL('./schema.gen.json', import.meta.url), 'utf8'));

/** vectors.json with every integer as a BigInt (ids go up to 2^64 − 1, beyond a double). */
export function readVectors() {
  const text = readFileSync(new URL('../../../protocol/testdata/vectors.json', import.meta.url), 'utf8');
  const marked = text.replace(/(?<=[:[,]\s*)(\d+)(?=\s*[,\]}])/g, '"@int:$1"');
  return JSON.parse(marked, (_, value) => (typeof value === 'string' && value.startsWith('@int:') ? BigInt(value.slice(5)) : value));
}

const hex = (bytes) => Buffer.from(bytes).toString('hex');
const unhex = (text) => new Uint8Array(Buffer.from(text, 'hex'));

/** A vector's JSON value as the client's value of SPEC type `type`. */
function value(type, json) {
  const list = type.match(/^list<(.+), \w+>$/);
  if (list) return json.map((item) => value(list[1], item));
  const option = type.match(/^option<(.+)>$/);
  if (option) return json === null ? null : value(option[1], json);
  if (schema.records[type]) return fields(schema.records[type], json);
  if (schema.enums[type]) return json;
  const base = schema.named[type]?.base ?? type;
  switch (base) {
    case 'varint':
      return BigInt(json);
    case 'u8':
    case 'u32':
      return Number(json);
    case 'u16 code':
      return typeof json === 'string' ? schema.errorCodes[json] : Number(json);
    case 'bool':
    case 'text':
      return json;
    case 'bytes':
      return unhex(json);
    case 'conversation':
      return 'user' in json ? { user: BigInt(json.user) } : { group: BigInt(json.group) };
    default:
      throw new Error(`no mapping for type ${type}`);
  }
}

function fields(layout, json) {
  assert.deepEqual(Object.keys(json), layout.map((f) => f.name), 'the vector names the SPEC fields in order');
  return Object.fromEntries(layout.map((f) => [f.name, value(f.type, json[f.name])]));
}

const vectors = readVectors();

test('the vector file has frames and malformed vectors', () => {
  assert.ok(vectors.frames.length >= 40);
  assert.ok(vectors.malformed.length >= 20);
});

for (const vector of vectors.frames) {
  test(`vector ${vector.name}: encodes to its hex and decodes to its frames`, () => {
    const frames = vector.message.map(({ kind, fields: json }) => ({ type: kind, ...fields(schema.frames[kind], json) }));
    assert.equal(hex(encodeMessage(frames)), vector.hex);
    assert.deepStrictEqual(decodeMessage(unhex(vector.hex)), frames);
  });
}

for (const vector of vectors.malformed) {
  test(`malformed ${vector.name}: ${vector.error}`, () => {
    assert.throws(
      () => decodeMessage(unhex(vector.hex), CLIENT_MESSAGE_LIMITS),
      (err) => err instanceof DecodeError && err.error === vector.error,
    );
  });
}

test('the frames before a bad one are decoded and handed over with the error', () => {
  // partial_frame: a PING, then a frame cut after its header.
  const err = (() => {
    try {
      decodeMessage(unhex('04012a0401'));
    } catch (e) {
      return e;
    }
  })();
  assert.ok(err instanceof DecodeError);
  assert.equal(err.error, 'PartialFrame');
  assert.deepStrictEqual(err.frames, [{ type: 'PING', nonce: 42n }]);
});

test('a client reading server messages has no frames-per-message limit', () => {
  const many = encodeMessage(Array.from({ length: 300 }, (_, i) => ({ type: 'PONG', nonce: BigInt(i) })));
  assert.equal(decodeMessage(many).length, 300);
  assert.throws(() => decodeMessage(many, CLIENT_MESSAGE_LIMITS), (e) => e.error === 'TooManyFrames');
});

test('a lower frame length limit is applied from the header', () => {
  const send = encodeMessage([{ type: 'SEND', client_id: 1n, to: { user: 2n }, payload: new Uint8Array(200) }]);
  assert.throws(() => decodeMessage(send, { maxFrameLen: 100 }), (e) => e.error === 'FrameTooLarge');
  assert.equal(decodeMessage(send, { maxFrameLen: 1000 }).length, 1);
});

test('a text field keeps a leading byte-order mark (decode then encode gives the same bytes)', () => {
  const frames = [{ type: 'ERROR', code: 100, retryable: false, retry_after_ms: 0, reference: 0n, text: '\uFEFFbom' }];
  const bytes = encodeMessage(frames);
  assert.deepStrictEqual(decodeMessage(bytes), frames);
  assert.equal(hex(encodeMessage(decodeMessage(bytes))), hex(bytes));
});
