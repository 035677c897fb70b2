// Whole WebSocket messages (SPEC §1, §2, §13): frames back to back, each a
// tag, a varint body length and the body the generated code reads or writes.

import { decodeBody, encodeBody, HELLO_TAG, KNOWN_TAGS, Limits, type Frame } from './spec.gen.js';
import { DecodeError, EncodeError, Reader, Writer } from './wire.js';

/** Limits of a decode. A client reading server messages keeps the defaults. */
export interface DecodeLimits {
  /** Frames in one message (default: no limit; a server applies MAX_FRAMES_PER_MESSAGE to clients). */
  maxFrames?: number;
  /** Bytes in one frame body (default MAX_FRAME_LEN). */
  maxFrameLen?: number;
}

/** The limits a server applies to a client's messages (§1, §12), for tests and tools. */
export const CLIENT_MESSAGE_LIMITS: Readonly<DecodeLimits> = { maxFrames: Limits.MAX_FRAMES_PER_MESSAGE };

/**
 * The frames of one WebSocket message, in order. Throws {@link DecodeError}
 * with the first failed check of §13; its `frames` holds those decoded
 * before the bad one.
 */
export function decodeMessage(message: Uint8Array, limits: DecodeLimits = {}): Frame[] {
  const maxFrames = limits.maxFrames ?? Infinity;
  const maxFrameLen = Math.min(limits.maxFrameLen ?? Limits.MAX_FRAME_LEN, Limits.MAX_FRAME_LEN);
  const frames: Frame[] = [];
  const r = new Reader(message, 0, message.length);
  try {
    if (message.length === 0) throw new DecodeError('EmptyMessage');
    while (r.pos < message.length) {
      if (frames.length >= maxFrames) throw new DecodeError('TooManyFrames');
      const tag = message[r.pos];
      if (!KNOWN_TAGS[tag]) r.unknownKind(tag);
      r.pos++;
      r.end = message.length;
      const len = r.anyVarint('length', 'PartialFrame');
      if (typeof len !== 'number' || len > maxFrameLen) throw new DecodeError('FrameTooLarge', `${len} bytes`);
      const end = r.pos + len;
      if (end > message.length) throw new DecodeError('PartialFrame');
      if (tag === HELLO_TAG && len >= 2) checkHelloVersions(message[r.pos], message[r.pos + 1]);
      r.end = end;
      const frame = decodeBody(tag, r);
      if (r.pos !== end) throw new DecodeError('TrailingBytes', frame.type);
      frames.push(frame);
    }
  } catch (err) {
    if (err instanceof DecodeError) err.frames = frames;
    throw err;
  }
  return frames;
}

/** §3: a HELLO's first two body bytes are its version range, checked first. */
function checkHelloVersions(min: number, max: number): void {
  if (max < Limits.VERSION_MIN || min > Limits.VERSION_MAX || min > max) {
    throw new DecodeError('UnsupportedVersion', `versions ${min}-${max}`);
  }
}

/** Frame bodies are at most 2^18 bytes: a 3-byte varint always holds the length. */
const LENGTH_ROOM = 3;

/** Encodes frames into messages; reuses one buffer across calls. */
export class Encoder {
  private readonly w = new Writer(1024);

  /** One message holding `frames` back to back (a fresh copy, safe to keep). */
  encode(frames: readonly Frame[]): Uint8Array {
    this.w.pos = 0;
    for (const frame of frames) this.put(frame);
    return this.w.buf.slice(0, this.w.pos);
  }

  /** Appends one frame; on an encode error nothing of it stays. */
  private put(frame: Frame): void {
    const w = this.w;
    const start = w.pos;
    w.reserve(1 + LENGTH_ROOM);
    w.pos = start + 1 + LENGTH_ROOM;
    let tag: number;
    try {
      tag = encodeBody(w, frame);
    } catch (err) {
      w.pos = start;
      throw err;
    }
    const len = w.pos - start - 1 - LENGTH_ROOM;
    if (len > Limits.MAX_FRAME_LEN) {
      w.pos = start;
      throw new EncodeError(`a ${frame.type} body of ${len} bytes exceeds MAX_FRAME_LEN`);
    }
    const b = w.buf;
    b[start] = tag;
    let p = start + 1;
    let n = len;
    while (n >= 0x80) {
      b[p++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    b[p++] = n;
    const bodyAt = start + 1 + LENGTH_ROOM;
    if (p < bodyAt) {
      b.copyWithin(p, bodyAt, w.pos);
      w.pos -= bodyAt - p;
    }
  }
}

const shared = new Encoder();

/** One message holding `frames` (see {@link Encoder.encode}). */
export function encodeMessage(frames: readonly Frame[]): Uint8Array {
  return shared.encode(frames);
}
