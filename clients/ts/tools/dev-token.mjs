// Development tokens (gateway/auth/TOKEN.md) minted in Node with the node's
// development key (`<data_dir>/keys/dev-signing.pk8`), for the web demo and
// the tests. A real deployment mints tokens in its auth service; never ship
// this to a browser.

import { createHash, createPrivateKey, createPublicKey, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const b64url = (bytes) => Buffer.from(bytes).toString('base64url');

/** The Ed25519 key of a PKCS#8 DER file, with the dev key id TOKEN.md derives from its public half. */
export function loadKey(pk8Path, keyId) {
  const key = createPrivateKey({ key: pkcs8v1(readFileSync(pk8Path)), format: 'der', type: 'pkcs8' });
  // An Ed25519 SPKI is a fixed 12-byte header and the 32-byte public key.
  const publicKey = createPublicKey(key).export({ format: 'der', type: 'spki' }).subarray(-32);
  const devId = (createHash('sha256').update(publicKey).digest().readUInt32BE(0) | 0x80000000) >>> 0;
  return { key, keyId: keyId ?? devId, publicKey };
}

// An Ed25519 PKCS#8 of either version starts the same way up to the 32-byte
// seed; v2 (what the gateway writes) appends the public key, which OpenSSL
// refuses in the encoding the gateway uses. The seed alone, rewrapped as v1,
// is the same key.
const ED25519_V1_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function pkcs8v1(der) {
  const algorithmAndSeedHeader = ED25519_V1_PREFIX.subarray(5);
  if (der[0] !== 0x30 || !der.subarray(5, 16).equals(algorithmAndSeedHeader) || der.length < 48) {
    throw new Error('not an Ed25519 PKCS#8 private key');
  }
  return Buffer.concat([ED25519_V1_PREFIX, der.subarray(16, 48)]);
}

/** The dev key of a node's data directory. */
export function devKey(dataDir) {
  return loadKey(join(dataDir, 'keys', 'dev-signing.pk8'));
}

/** A 133-byte v1 token for `user` (bigint or number) and `device`, valid `ttl` seconds from `issuedAt`. */
export function mintToken({ key, keyId }, { user, device, ttl = 3600, issuedAt = Math.floor(Date.now() / 1000) }) {
  const payload = Buffer.alloc(32);
  payload.writeUInt32BE(keyId, 0);
  payload.writeBigUInt64BE(BigInt(user), 4);
  payload.writeUInt32BE(device, 12);
  payload.writeBigUInt64BE(BigInt(issuedAt), 16);
  payload.writeBigUInt64BE(BigInt(issuedAt + ttl), 24);
  const signed = `v1.${b64url(payload)}`;
  return `${signed}.${b64url(sign(null, Buffer.from(signed, 'ascii'), key))}`;
}
