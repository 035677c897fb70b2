// The field encodings of SPEC §2.1: a Writer that appends them and a Reader
// that takes them off a frame body, with the SPEC's checks and error names.
// The generated code (spec.gen.ts) calls these once per field.

import type { DecodeErrorName } from './spec.gen.js';

/** A conversation (§2.1): one-to-one with a user, or a group. */
export type Conversation = { user: bigint } | { group: bigint };

/** Input that is not a v1 message (SPEC §13); `error` is the SPEC's name. */
export class DecodeError extends Error {
  /** Frames decoded before the bad one (they take effect: §13, order of checks). */
  frames: unknown[] = [];
  constructor(
    readonly error: DecodeErrorName,
    readonly field?: string,
  ) {
    super(field === undefined ? error : `${error} (${field})`);
    this.name = 'DecodeError';
  }
}

/** A frame that cannot be encoded: a value out of its type's range or over a limit. */
export class EncodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EncodeError';
  }
}

const U64_MAX = (1n << 64n) - 1n;
const textEncoder = new TextEncoder();
// fatal: invalid UTF-8 is an error, never U+FFFD; ignoreBOM: a leading BOM is text, kept.
const textDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
// One-byte varints are most varints on the wire: no BigInt conversion for them.
const SMALL: readonly bigint[] = Array.from({ length: 128 }, (_, i) => BigInt(i));

/** Bytes of `n`'s varint (n below 2^53). */
function varintSize(n: number): number {
  let size = 1;
  for (; n >= 0x80; size++) n = Math.floor(n / 128);
  return size;
}

/** Appends encoded fields to a growable buffer. */
export class Writer {
  buf: Uint8Array;
  pos = 0;

  constructor(capacity = 1024) {
    this.buf = new Uint8Array(capacity);
  }

  reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
  }

  u8(v: number): void {
    this.reserve(1);
    this.buf[this.pos++] = v;
  }

  checkU8(v: number, field: string): number {
    return Number.isInteger(v) && v >= 0 && v <= 0xff ? v : this.badValue(field, v);
  }

  bool(v: boolean): void {
    this.u8(v === true ? 1 : 0);
  }

  /** A varint from a number below 2^53. */
  varnum(n: number): void {
    this.reserve(8);
    const b = this.buf;
    let p = this.pos;
    while (n >= 0x80) {
      // `& 0x7f` keeps the low bits whatever ToInt32 does to the high ones.
      b[p++] = (n & 0x7f) | 0x80;
      n = Math.floor(n / 128);
    }
    b[p++] = n;
    this.pos = p;
  }

  varint(v: bigint, field: string): void {
    if (typeof v !== 'bigint') this.badValue(field, v);
    // BigInt comparisons cost; most ids fit 32 bits, so check those first.
    if (v >= 0n && v <= 0xffffffffn) {
      this.varnum(Number(v));
      return;
    }
    if (v < 0n || v > U64_MAX) this.badValue(field, v);
    this.reserve(10);
    while (v >= 0x80n) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  uint(v: number, max: number, field: string): void {
    if (!Number.isInteger(v) || v < 0 || v > max) this.badValue(field, v);
    this.varnum(v);
  }

  count(n: number, max: number, field: string): void {
    if (n > max) throw new EncodeError(`${field}: ${n} items, at most ${max}`);
    this.varnum(n);
  }

  bytes(v: Uint8Array, max: number, field: string): void {
    if (!(v instanceof Uint8Array)) this.badValue(field, v);
    if (v.length > max) throw new EncodeError(`${field}: ${v.length} bytes, at most ${max}`);
    this.varnum(v.length);
    this.reserve(v.length);
    this.buf.set(v, this.pos);
    this.pos += v.length;
  }

  text(v: string, max: number, field: string): void {
    // A lone surrogate has no UTF-8 form: refuse it rather than send U+FFFD.
    if (typeof v !== 'string' || !v.isWellFormed()) this.badValue(field, v);
    // UTF-8 straight into the buffer (TextEncoder.encode would allocate a copy
    // per string): after room for the longest length prefix it may need, at
    // most 3 bytes per UTF-16 unit; a shorter prefix then moves the text down.
    const most = v.length * 3;
    const room = varintSize(most);
    this.reserve(room + most);
    const at = this.pos + room;
    const { written } = textEncoder.encodeInto(v, this.buf.subarray(at, at + most));
    if (written > max) throw new EncodeError(`${field}: ${written} bytes, at most ${max}`);
    this.varnum(written);
    if (this.pos < at) this.buf.copyWithin(this.pos, at, at + written);
    this.pos += written;
  }

  conversation(c: Conversation, field: string): void {
    if (c !== null && typeof c === 'object' && 'user' in c) {
      this.u8(1);
      this.varint(c.user, field);
    } else if (c !== null && typeof c === 'object' && 'group' in c) {
      this.u8(2);
      this.varint(c.group, field);
    } else {
      this.badValue(field, c);
    }
  }

  badValue(field: string, v: unknown): never {
    const shown = JSON.stringify(v, (_, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)) ?? String(v);
    throw new EncodeError(`${field}: invalid value ${shown}`);
  }
}

/** Takes fields off `buf` from `pos` up to `end` (the end of the frame body). */
export class Reader {
  constructor(
    readonly buf: Uint8Array,
    public pos: number,
    public end: number,
  ) {}

  u8(field: string): number {
    if (this.pos >= this.end) throw new DecodeError('Truncated', field);
    return this.buf[this.pos++];
  }

  bool(field: string): boolean {
    const b = this.u8(field);
    return b === 1 ? true : b === 0 ? false : this.invalid(field);
  }

  /** An option's presence byte: `00` absent, `01` present. */
  option(field: string): boolean {
    return this.bool(field);
  }

  varint(field: string): bigint {
    if (this.pos < this.end) {
      const b = this.buf[this.pos];
      if (b < 0x80) {
        this.pos++;
        return SMALL[b];
      }
    }
    const v = this.anyVarint(field, 'Truncated');
    return typeof v === 'bigint' ? v : BigInt(v);
  }

  /** A varint that must be at most `max` (u32, u16 code): `InvalidValue` above. */
  uint(max: number, field: string): number {
    const v = this.anyVarint(field, 'Truncated');
    return typeof v === 'number' && v <= max ? v : this.invalid(field);
  }

  /**
   * A varint as a number when below 2^49, else as a bigint; `short` is the
   * error when the input ends inside it (`Truncated` in a body, `PartialFrame`
   * in a frame header).
   */
  anyVarint(field: string, short: DecodeErrorName): number | bigint {
    const b = this.buf;
    let p = this.pos;
    let value = 0;
    let scale = 1;
    let big: bigint | undefined;
    for (let i = 0; i < 10; i++) {
      if (p >= this.end) throw new DecodeError(short, field);
      const byte = b[p++];
      // The 10th byte may only carry the single top bit of a u64.
      if (i === 9 && byte > 1) throw new DecodeError('VarintOverflow', field);
      if (i < 7) {
        value += (byte & 0x7f) * scale;
        scale *= 128;
      } else {
        big = (big ?? BigInt(value)) | (BigInt(byte & 0x7f) << BigInt(7 * i));
      }
      if (byte < 0x80) {
        if (byte === 0 && i > 0) throw new DecodeError('NonCanonicalVarint', field);
        this.pos = p;
        return big ?? value;
      }
    }
    // Unreachable: the 10th byte either overflows or ends the varint.
    throw new DecodeError('VarintOverflow', field);
  }

  /** A length or count: over `max` is `tooLong`; else the number. */
  private length(max: number, field: string, tooLong: DecodeErrorName): number {
    const n = this.anyVarint(field, 'Truncated');
    if (typeof n !== 'number' || n > max) throw new DecodeError(tooLong, field);
    return n;
  }

  /** A view of the bytes (no copy: the message buffer stays alive while it is held). */
  bytes(max: number, field: string): Uint8Array {
    const n = this.length(max, field, 'FieldTooLong');
    if (n > this.end - this.pos) throw new DecodeError('Truncated', field);
    const start = this.pos;
    this.pos += n;
    return this.buf.subarray(start, this.pos);
  }

  text(max: number, field: string): string {
    const bytes = this.bytes(max, field);
    try {
      return textDecoder.decode(bytes);
    } catch {
      throw new DecodeError('InvalidUtf8', field);
    }
  }

  list<T>(max: number, field: string, item: (r: Reader) => T): T[] {
    const n = this.length(max, field, 'TooManyItems');
    const items: T[] = [];
    for (let i = 0; i < n; i++) items.push(item(this));
    return items;
  }

  conversation(field: string): Conversation {
    const tag = this.u8(field);
    if (tag === 1) return { user: this.varint(field) };
    if (tag === 2) return { group: this.varint(field) };
    return this.invalid(field);
  }

  invalid(field: string): never {
    throw new DecodeError('InvalidValue', field);
  }

  unknownKind(tag: number): never {
    throw new DecodeError('UnknownKind', `tag 0x${tag.toString(16).padStart(2, '0')}`);
  }
}
