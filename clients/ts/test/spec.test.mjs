// The generated codec is what protocol/SPEC.md says today, and the generator
// reads the SPEC rather than echoing it: a change in a SPEC table changes
// the output, and an unreadable table stops it.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ERROR_CLASS, CLOSE_ACTION, ErrorCode, FRAME_KINDS, Limits } from '../dist/index.js';

const gen = new URL('../scripts/gen-spec.mjs', import.meta.url).pathname;
const specPath = new URL('../../../protocol/SPEC.md', import.meta.url).pathname;
const spec = readFileSync(specPath, 'utf8');

/** Runs the generator on `text` as the SPEC; returns its exit status, output and generated code. */
function generate(text) {
  const dir = mkdtempSync(join(tmpdir(), 'gen-spec-'));
  mkdirSync(join(dir, 'src'));
  mkdirSync(join(dir, 'test'));
  writeFileSync(join(dir, 'SPEC.md'), text);
  const out = join(dir, 'src', 'spec.gen.ts');
  const run = spawnSync(process.execPath, [gen, join(dir, 'SPEC.md'), out], { encoding: 'utf8' });
  return { status: run.status, stderr: run.stderr, code: run.status === 0 ? readFileSync(out, 'utf8') : '' };
}

test('src/spec.gen.ts and test/schema.gen.json are current with protocol/SPEC.md', () => {
  execFileSync(process.execPath, [gen, '--check'], { encoding: 'utf8' });
});

test('a changed limit, error code or field in the SPEC changes the generated code', () => {
  const base = generate(spec).code;
  assert.match(base, /MAX_PAYLOAD: 65536,/);
  const limit = generate(spec.replace('| MAX_PAYLOAD | 65,536 |', '| MAX_PAYLOAD | 32,768 |')).code;
  assert.match(limit, /MAX_PAYLOAD: 32768,/);
  const code = generate(spec.replace('| 601 | MEDIA_QUOTA_EXCEEDED | retryable |', '| 601 | MEDIA_QUOTA_EXCEEDED | terminal |')).code;
  assert.match(code, /601: 'terminal',/);
  assert.notEqual(code, base);
  const field = generate(spec.replace('| 1 | up_to | seq | Every entry with seq ≤ up_to is processed |', '| 1 | up_to | u32 | Every entry with seq ≤ up_to is processed |')).code;
  assert.match(field, /interface Ack \{\n {2}type: 'ACK';\n {2}up_to: number;/);
});

test('a SPEC table the generator cannot read stops it with a message', () => {
  const broken = generate(spec.replace('| 1 | nonce | varint | Echoed in PONG |', '| 1 | nonce | varint128 | Echoed in PONG |'));
  assert.notEqual(broken.status, 0);
  assert.match(broken.stderr, /unknown type "varint128" of field nonce/);
});

test('the generated tables hold what the SPEC tables say (spot checks)', () => {
  assert.equal(Limits.MAX_CLIENT_MESSAGE_LEN, 266240);
  assert.equal(ErrorCode.AUTH_EXPIRED, 111);
  assert.equal(ERROR_CLASS[111], 'new_token');
  assert.equal(ERROR_CLASS[103], 'retryable');
  assert.equal(CLOSE_ACTION[4007], 'terminal');
  assert.equal(CLOSE_ACTION[4004], 'new_token');
  assert.equal(CLOSE_ACTION[1006], 'resumable');
  assert.deepEqual(FRAME_KINDS.MEDIA_DOWNLOAD_TICKET, { tag: 0x63, direction: 'server' });
  assert.deepEqual(FRAME_KINDS.PING, { tag: 0x04, direction: 'both' });
});
