// The development token minter (tools/dev-token.mjs) produces exactly the
// test vector of gateway/auth/TOKEN.md, read from that file.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadKey, mintToken } from '../tools/dev-token.mjs';

const doc = readFileSync(new URL('../../../gateway/auth/TOKEN.md', import.meta.url), 'utf8');
const line = (name) => doc.match(new RegExp(`^${name}:\\s+(\\S.*)$`, 'm'))[1].trim();

test('the TOKEN.md vector: same token from the same key and claims', () => {
  const dir = mkdtempSync(join(tmpdir(), 'token-'));
  const pk8 = join(dir, 'key.pk8');
  writeFileSync(pk8, Buffer.from(line('pkcs8-v1'), 'hex'));
  const claims = Object.fromEntries(
    line('claims')
      .split(' ')
      .map((kv) => kv.split('='))
      .map(([name, value]) => [name, Number(value)]),
  );
  const key = loadKey(pk8, claims.key_id);
  assert.equal(Buffer.from(key.publicKey).toString('hex'), line('public-key'));
  const token = mintToken(key, { user: claims.user, device: claims.device, issuedAt: claims.issued_at, ttl: claims.expires_at - claims.issued_at });
  assert.equal(token, line('token'));
  assert.equal(token.length, 133);
});

test('the dev key id is derived from the public key as TOKEN.md says (top bit set)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'token-'));
  const pk8 = join(dir, 'key.pk8');
  writeFileSync(pk8, Buffer.from(line('pkcs8-v1'), 'hex'));
  assert.equal(loadKey(pk8).keyId, Number(doc.match(/dev-key-id: (\d+)/)[1]));
});
