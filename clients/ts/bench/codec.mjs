// Codec operations per second on the golden vectors (protocol/testdata/
// vectors.json, the frame vectors' `hex`), the TypeScript side of
// scripts/bench-ts-codec; the Rust side is protocol/examples/vector_ops.rs,
// which runs the same loops:
//
// - decode: one op is decodeMessage of one vector message (as a client reads a
//   server's: no frames-per-message limit), cycling over every frame vector;
// - encode: one op is one vector's frames encoded with one reused Encoder
//   (whose encode returns a fresh copy of the message: the API has no other).
//
// Each phase warms up for 0.5 s, then counts whole cycles over the vectors for
// 2 s of wall time. Every vector is checked to round-trip (encode(decode(hex))
// === hex) before timing. Prints one JSON line to stdout and a human line to
// stderr. Usage (after `npx tsc -p tsconfig.json`): node bench/codec.mjs

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { decodeMessage, Encoder } from '../dist/index.js';

const VECTORS = new URL('../../../protocol/testdata/vectors.json', import.meta.url);
const WARM_UP_MS = 500;
const MEASURE_MS = 2000;

// Only `hex` is read, so JSON.parse's doubles (which lose 64-bit ids in
// `message`) do not matter here.
const messages = JSON.parse(readFileSync(VECTORS, 'utf8')).frames.map((v) => Buffer.from(v.hex, 'hex'));
// Plain Uint8Arrays, as a WebSocket's ArrayBuffer gives them, not Buffers.
const inputs = messages.map((m) => new Uint8Array(m));
const frames = inputs.map((m) => decodeMessage(m));
const encoder = new Encoder();

inputs.forEach((message, i) => {
  const again = encoder.encode(frames[i]);
  if (!Buffer.from(again).equals(Buffer.from(message))) {
    throw new Error(`round trip: ${messages[i].toString('hex')} encodes back to ${Buffer.from(again).toString('hex')}`);
  }
});

// Every result is stored in a module-level variable, which V8 cannot prove
// unused, so it cannot drop the work.
let sink;

/** Runs `cycle` (one op per vector) for WARM_UP_MS, then MEASURE_MS; ops per second of the measured whole cycles. */
function opsPerSec(cycle) {
  let start = performance.now();
  while (performance.now() - start < WARM_UP_MS) cycle();
  start = performance.now();
  let cycles = 0;
  let elapsed;
  while ((elapsed = performance.now() - start) < MEASURE_MS) {
    cycle();
    cycles++;
  }
  return (cycles * inputs.length) / (elapsed / 1000);
}

const decodeOps = opsPerSec(() => {
  for (const message of inputs) sink = decodeMessage(message);
});
const encodeOps = opsPerSec(() => {
  for (const f of frames) sink = encoder.encode(f);
});

const vectors = inputs.length;
const framesPerCycle = frames.reduce((n, f) => n + f.length, 0);
const bytesPerCycle = inputs.reduce((n, m) => n + m.length, 0);
const framesPerSec = (ops) => (ops / vectors) * framesPerCycle;
const mbPerSec = (ops) => ((ops / vectors) * bytesPerCycle) / 1e6;
const m = (x) => (x / 1e6).toFixed(2);

console.error(
  `ts: decode ${m(decodeOps)} M ops/s (${m(framesPerSec(decodeOps))} M frames/s, ${mbPerSec(decodeOps).toFixed(1)} MB/s), ` +
    `encode ${m(encodeOps)} M ops/s (${m(framesPerSec(encodeOps))} M frames/s, ${mbPerSec(encodeOps).toFixed(1)} MB/s)`,
);
console.log(
  JSON.stringify({
    impl: 'ts',
    decode_ops: Math.round(decodeOps),
    encode_ops: Math.round(encodeOps),
    decode_frames: Math.round(framesPerSec(decodeOps)),
    encode_frames: Math.round(framesPerSec(encodeOps)),
    decode_mb: Math.round(mbPerSec(decodeOps) * 10) / 10,
    encode_mb: Math.round(mbPerSec(encodeOps) * 10) / 10,
    vectors,
    frames_per_cycle: framesPerCycle,
    bytes_per_cycle: bytesPerCycle,
    seconds: MEASURE_MS / 1000,
    node: process.version,
  }),
);
