#!/usr/bin/env node
// Generates src/spec.gen.ts from protocol/SPEC.md: the frame catalogue, the
// field tables of §9 (as straight-line encoders and decoders), the records,
// enumerations, capability bits, error and close codes, limits and decode
// error names. Nothing in the client's codec is copied by hand from the SPEC;
// `--check` fails when the committed file is not what the SPEC gives (the
// test suite runs it).
//
// Usage: node scripts/gen-spec.mjs [--check] [SPEC.md] [OUT.ts]

import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const check = args[0] === '--check';
if (check) args.shift();
const specPath = args[0] ?? resolve(here, '../../../protocol/SPEC.md');
const outPath = args[1] ?? resolve(here, '../src/spec.gen.ts');
// The field types as data, for the tests that read vectors.json (not shipped).
const schemaPath = resolve(dirname(outPath), '../test/schema.gen.json');

const spec = readFileSync(specPath, 'utf8');

function fail(message) {
  console.error(`gen-spec: ${message} (in ${specPath})`);
  process.exit(1);
}

/** The text of the section whose heading starts with `heading`, to the next heading of its level or above. */
function section(heading) {
  const lines = spec.split('\n');
  const start = lines.findIndex((line) => line.startsWith(heading));
  if (start < 0) fail(`no section "${heading}"`);
  const level = heading.match(/^#+/)[0].length;
  let end = start + 1;
  while (end < lines.length) {
    const m = lines[end].match(/^(#+) /);
    if (m && m[1].length <= level) break;
    end++;
  }
  return lines.slice(start + 1, end).join('\n');
}

/** Rows of the first Markdown table in `text`, as arrays of trimmed cells (header and rule skipped). */
function table(text, columns) {
  const rows = text
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .map((line) => line.slice(1, -1).split(' | ').map((cell) => cell.trim()));
  const body = rows.slice(2);
  for (const row of body) {
    if (row.length !== columns) fail(`a table row has ${row.length} cells, not ${columns}: ${row.join(' | ')}`);
  }
  return body;
}

const unquote = (cell) => cell.replace(/^`|`$/g, '');
const number = (cell) => {
  const n = Number(cell.replace(/,/g, ''));
  if (!Number.isSafeInteger(n)) fail(`not a number: ${cell}`);
  return n;
};

// ---- §12 limits -----------------------------------------------------------
const limits = new Map(table(section('## 12.'), 3).map(([name, value]) => [name, number(value)]));
const limit = (name) => {
  if (!limits.has(name)) fail(`unknown limit ${name}`);
  return name;
};

// ---- §2.1 named types -----------------------------------------------------
const encodings = section('### 2.1');
const named = new Map();
const varints = encodings.match(/Named types: ([^.]*?) are varints/s);
if (!varints) fail('§2.1 does not list the varint named types');
for (const m of varints[1].matchAll(/`(\w+)`/g)) named.set(m[1], { base: 'varint' });
const deviceType = encodings.match(/`device`\s+is a `(u32)`/);
if (!deviceType) fail('§2.1 does not give the type of device');
named.set('device', { base: deviceType[1] });
for (const m of encodings.matchAll(/`(\w+)`(?: \([^)]*\))?(?: is)?\s+`(bytes|text)<(\w+)>`/g)) {
  named.set(m[1], { base: m[2], max: limit(m[3]) });
}
for (const required of ['payload', 'send_payload', 'token', 'key', 'signature', 'note', 'group_name', 'media_id', 'url']) {
  if (!named.has(required)) fail(`§2.1 does not define ${required}`);
}

// ---- §2.2 enumerations and capability bits --------------------------------
const enumSection = section('### 2.2');
const enums = new Map();
for (const [name, values] of table(enumSection, 2)) {
  const list = [...values.matchAll(/`([0-9a-f]{2})` ([\w-]+)/g)].map((m) => [parseInt(m[1], 16), m[2]]);
  if (list.length === 0) fail(`enum ${name} has no values`);
  enums.set(unquote(name), list);
}
const capabilities = [...enumSection.matchAll(/bit (\d+)\s+`(\w+)`/g)].map((m) => [m[2], Number(m[1])]);
if (capabilities.length === 0) fail('§2.2 lists no capability bits');

// ---- §8 catalogue and §9 field tables -------------------------------------
const frames = table(section('## 8.'), 4).map(([tag, name, direction, purpose]) => ({
  tag: parseInt(tag, 16),
  name,
  direction: { 'C→S': 'client', 'S→C': 'server', both: 'both' }[direction] ?? fail(`direction ${direction}`),
  purpose,
}));
const records = new Map();
for (const frame of frames) {
  const body = section(`### 0x${frame.tag.toString(16).padStart(2, '0')} ${frame.name}`);
  frame.fields = table(body, 4).map(([index, name, type, meaning], i) => {
    if (number(index) !== i + 1) fail(`${frame.name}: field ${name} is numbered ${index}`);
    // Records are defined where first used: "`member` = user · role".
    const record = meaning.match(/^`(\w+)` = (.+?)(?:: [^·]*)?$/);
    if (record) defineRecord(record[1], record[2]);
    return { name, type: unquote(type) };
  });
}

function defineRecord(name, layout) {
  // "id (u32) · key · signature": each part is a field, named by its type unless a type follows in parentheses.
  const fields = layout.split(' · ').map((part) => {
    const m = part.trim().match(/^(\w+)(?: \((.+)\))?$/);
    if (!m) fail(`record ${name}: cannot read "${part}"`);
    return { name: m[1], type: m[2] ?? m[1] };
  });
  records.set(name, fields);
}
// Frames are a union discriminated by \`type\`: no field may have that name.
for (const frame of frames) {
  if (frame.fields.some((f) => f.name === 'type')) fail(`${frame.name} has a field named "type", the frames' discriminant`);
}
const deliver = frames.find((frame) => frame.name === 'DELIVER');
records.set('DELIVER body', deliver.fields);

// §15: the JSON keys of each record, which are its field names.
for (const [record, , keys] of table(section('## 15.'), 3)) {
  const fields = records.get(record) ?? fail(`§15 names record ${record}, which no table defines`);
  if (fields.map((f) => f.name).join(', ') !== keys) fail(`§15: record ${record} has fields ${fields.map((f) => f.name)}, not ${keys}`);
}

// ---- §10, §11, §13 --------------------------------------------------------
const errorCodes = table(section('## 10.'), 4).map(([code, name, klass]) => ({ code: number(code), name, klass }));
const closeCodes = table(section('## 11.'), 4).map(([code, name, action]) => ({ code: number(code), name, action }));
const decodeErrors = table(section('## 13.'), 2).map(([name]) => name);
const classes = { retryable: 'retryable', terminal: 'terminal', 'new token': 'new_token', resumable: 'resumable' };
for (const e of [...errorCodes.map((e) => e.klass), ...closeCodes.map((c) => c.action)]) {
  if (!(e in classes)) fail(`unknown class "${e}"`);
}

// ---- TypeScript types and code per SPEC type ------------------------------
// A field named by a reserved word (MEDIA_UPLOAD.class) gets another local name in decoders.
const RESERVED = new Set(['break', 'case', 'catch', 'class', 'const', 'continue', 'default', 'delete', 'do', 'else', 'enum', 'export', 'extends', 'finally', 'for', 'function', 'if', 'import', 'in', 'instanceof', 'let', 'new', 'return', 'static', 'super', 'switch', 'this', 'throw', 'try', 'typeof', 'var', 'void', 'while', 'with', 'yield']);
const local = (name) => (RESERVED.has(name) ? `${name}_` : name);
const members = (fields) => fields.map((f) => (local(f.name) === f.name ? f.name : `${f.name}: ${local(f.name)}`)).join(', ');
const pascal = (name) => name.toLowerCase().replace(/(^|[_ ])(\w)/g, (_, __, c) => c.toUpperCase());
const recordType = (name) => (name === 'DELIVER body' ? 'DeliverBody' : pascal(name));

/** { ts, enc(value expr, field) → statement, dec(field) → expression } for a SPEC type. */
function codec(type, field) {
  const list = type.match(/^list<(.+), (\w+)>$/);
  if (list) {
    const item = codec(list[1], field);
    return {
      ts: `${item.ts}[]`,
      enc: (v) => `w.count(${v}.length, L.${limit(list[2])}, '${field}'); for (const item of ${v}) { ${item.enc('item')} }`,
      dec: () => `r.list(L.${limit(list[2])}, '${field}', (r) => ${item.dec()})`,
    };
  }
  const option = type.match(/^option<(.+)>$/);
  if (option) {
    const inner = codec(option[1], field);
    return {
      ts: `${inner.ts} | null`,
      enc: (v) => `if (${v} === null) { w.u8(0); } else { w.u8(1); ${inner.enc(v)} }`,
      dec: () => `(r.option('${field}') ? ${inner.dec()} : null)`,
    };
  }
  if (records.has(type)) {
    const t = recordType(type);
    return { ts: t, enc: (v) => `enc${t}(w, ${v});`, dec: () => `dec${t}(r)` };
  }
  if (enums.has(type)) {
    const t = pascal(type);
    return {
      ts: t,
      enc: (v) => `w.u8(${t}Codes.get(${v}) ?? w.badValue('${field}', ${v}));`,
      dec: () => `(${t}Names[r.u8('${field}')] ?? r.invalid('${field}'))`,
    };
  }
  const base = named.get(type) ?? { base: type };
  switch (base.base) {
    case 'u8':
      return { ts: 'number', enc: (v) => `w.u8(w.checkU8(${v}, '${field}'));`, dec: () => `r.u8('${field}')` };
    case 'bool':
      return { ts: 'boolean', enc: (v) => `w.bool(${v});`, dec: () => `r.bool('${field}')` };
    case 'varint':
      return { ts: 'bigint', enc: (v) => `w.varint(${v}, '${field}');`, dec: () => `r.varint('${field}')` };
    case 'u32':
      return { ts: 'number', enc: (v) => `w.uint(${v}, 0xffffffff, '${field}');`, dec: () => `r.uint(0xffffffff, '${field}')` };
    case 'u16 code':
      return { ts: 'number', enc: (v) => `w.uint(${v}, 0xffff, '${field}');`, dec: () => `r.uint(0xffff, '${field}')` };
    case 'bytes':
      return { ts: 'Uint8Array', enc: (v) => `w.bytes(${v}, L.${base.max}, '${field}');`, dec: () => `r.bytes(L.${base.max}, '${field}')` };
    case 'text':
      return { ts: 'string', enc: (v) => `w.text(${v}, L.${base.max}, '${field}');`, dec: () => `r.text(L.${base.max}, '${field}')` };
    case 'conversation':
      return { ts: 'Conversation', enc: (v) => `w.conversation(${v}, '${field}');`, dec: () => `r.conversation('${field}')` };
    default:
      fail(`unknown type "${type}" of field ${field}`);
  }
}

const out = [];
const emit = (line = '') => out.push(line);
emit('// Generated by scripts/gen-spec.mjs from protocol/SPEC.md. Do not edit:');
emit('// change the SPEC and run `npm run gen` (the tests fail when this file is stale).');
emit("import type { Reader, Writer, Conversation } from './wire.js';");
emit();
emit('/** §12: protocol maxima. */');
emit('export const Limits = {');
for (const [name, value] of limits) emit(`  ${name}: ${value},`);
emit('} as const;');
emit('const L = Limits;');
emit();
emit('/** §2.2: capability bits (HELLO asks, AUTH_OK grants). */');
emit('export const Capability = {');
for (const [name, bit] of capabilities) emit(`  ${name}: ${1n << BigInt(bit)}n,`);
emit('} as const;');
emit(`/** Every capability this client knows. */`);
emit(`export const ALL_CAPABILITIES = ${capabilities.reduce((acc, [, bit]) => acc | (1n << BigInt(bit)), 0n)}n;`);
emit();
for (const [name, values] of enums) {
  const t = pascal(name);
  emit(`/** §2.2 \`${name}\`. */`);
  emit(`export type ${t} = ${values.map(([, v]) => `'${v}'`).join(' | ')};`);
  emit(`const ${t}Codes = new Map<unknown, number>([${values.map(([c, v]) => `['${v}', ${c}]`).join(', ')}]);`);
  const names = [];
  for (const [c, v] of values) names[c] = `'${v}'`;
  emit(`const ${t}Names: (${t} | undefined)[] = [${Array.from(names, (n) => n ?? 'undefined').join(', ')}];`);
}
emit();
emit('/** §10: error codes by name. */');
emit('export const ErrorCode = {');
for (const e of errorCodes) emit(`  ${e.name}: ${e.code},`);
emit('} as const;');
emit('/** §10: each known error code\'s class (an unknown one is terminal, or as ERROR.retryable says). */');
emit("export const ERROR_CLASS: Readonly<Record<number, 'retryable' | 'terminal' | 'new_token'>> = {");
for (const e of errorCodes) emit(`  ${e.code}: '${classes[e.klass]}',`);
emit('};');
emit('/** §10: each known error code\'s name. */');
emit('export const ERROR_NAME: Readonly<Record<number, string>> = {');
for (const e of errorCodes) emit(`  ${e.code}: '${e.name}',`);
emit('};');
emit();
emit('/** §11: close codes by name. */');
emit('export const CloseCode = {');
for (const c of closeCodes) emit(`  ${c.name}: ${c.code},`);
emit('} as const;');
emit('/** §11: what a client does after each known close code. */');
emit("export const CLOSE_ACTION: Readonly<Record<number, 'resumable' | 'terminal' | 'new_token'>> = {");
for (const c of closeCodes) emit(`  ${c.code}: '${classes[c.action]}',`);
emit('};');
emit();
emit('/** §13: decode error names. */');
emit(`export type DecodeErrorName = ${decodeErrors.map((n) => `'${n}'`).join(' | ')};`);
emit();
emit('// ---- records (§9, §15) ----');
for (const [name, fields] of records) {
  const t = recordType(name);
  emit(`export interface ${t} {`);
  for (const f of fields) emit(`  ${f.name}: ${codec(f.type, f.name).ts};`);
  emit('}');
  emit(`function enc${t}(w: Writer, v: ${t}): void {`);
  for (const f of fields) emit(`  ${codec(f.type, f.name).enc(`v.${f.name}`)}`);
  emit('}');
  emit(`function dec${t}(r: Reader): ${t} {`);
  for (const f of fields) emit(`  const ${local(f.name)} = ${codec(f.type, f.name).dec()};`);
  emit(`  return { ${members(fields)} };`);
  emit('}');
}
emit();
emit('// ---- frames (§8, §9) ----');
for (const frame of frames) {
  const t = pascal(frame.name);
  emit(`/** 0x${frame.tag.toString(16).padStart(2, '0')} ${frame.name} (${frame.direction === 'both' ? 'both directions' : frame.direction === 'client' ? 'client to server' : 'server to client'}): ${frame.purpose}. */`);
  emit(`export interface ${t} {`);
  emit(`  type: '${frame.name}';`);
  for (const f of frame.fields) emit(`  ${f.name}: ${codec(f.type, f.name).ts};`);
  emit('}');
}
emit(`/** Every frame of v1. */`);
emit(`export type Frame = ${frames.map((f) => pascal(f.name)).join(' | ')};`);
emit(`/** A frame's kind, its SPEC name (the \`type\` of a Frame). */`);
emit(`export type FrameKind = Frame['type'];`);
emit();
emit('/** §8: tag, direction of each frame kind. */');
emit("export const FRAME_KINDS: Readonly<Record<FrameKind, { tag: number; direction: 'client' | 'server' | 'both' }>> = {");
for (const f of frames) emit(`  ${f.name}: { tag: 0x${f.tag.toString(16).padStart(2, '0')}, direction: '${f.direction}' },`);
emit('};');
emit();
emit('/** Writes the body of `frame` and returns its tag. */');
emit('export function encodeBody(w: Writer, frame: Frame): number {');
emit('  switch (frame.type) {');
for (const frame of frames) {
  emit(`    case '${frame.name}': {`);
  for (const f of frame.fields) emit(`      ${codec(f.type, f.name).enc(`frame.${f.name}`)}`);
  emit(`      return 0x${frame.tag.toString(16).padStart(2, '0')};`);
  emit('    }');
}
emit('    default:');
emit("      return w.badValue('type', (frame as { type: unknown }).type);");
emit('  }');
emit('}');
emit();
emit('/** Decodes the body of a frame with `tag` (the reader ends where the body does). */');
emit('export function decodeBody(tag: number, r: Reader): Frame {');
emit('  switch (tag) {');
for (const frame of frames) {
  emit(`    case 0x${frame.tag.toString(16).padStart(2, '0')}: {`);
  for (const f of frame.fields) emit(`      const ${local(f.name)} = ${codec(f.type, f.name).dec()};`);
  emit(`      return { type: '${frame.name}', ${members(frame.fields)} };`);
  emit('    }');
}
emit('    default:');
emit("      return r.unknownKind(tag);");
emit('  }');
emit('}');
emit();
emit('/** Whether `tag` names a v1 frame kind. */');
emit(`export const KNOWN_TAGS: readonly boolean[] = (() => { const t: boolean[] = new Array(256).fill(false); for (const k of [${frames.map((f) => `0x${f.tag.toString(16).padStart(2, '0')}`).join(', ')}]) t[k] = true; return t; })();`);
emit('/** The tag of HELLO, whose first two body bytes are checked before the rest (§3). */');
emit(`export const HELLO_TAG = 0x${frames.find((f) => f.name === 'HELLO').tag.toString(16).padStart(2, '0')};`);

const generated = out.join('\n') + '\n';
const schema =
  JSON.stringify(
    {
      named: Object.fromEntries(named),
      enums: Object.fromEntries([...enums].map(([name, values]) => [name, values.map(([, v]) => v)])),
      records: Object.fromEntries(records),
      frames: Object.fromEntries(frames.map((f) => [f.name, f.fields])),
      errorCodes: Object.fromEntries(errorCodes.map((e) => [e.name, e.code])),
    },
    null,
    1,
  ) + '\n';
const outputs = [
  [outPath, generated],
  [schemaPath, schema],
];
if (check) {
  for (const [path, text] of outputs) {
    let current = '';
    try {
      current = readFileSync(path, 'utf8');
    } catch {
      // Missing counts as stale.
    }
    if (current !== text) {
      console.error(`gen-spec: ${path} is stale: run \`npm run gen\` in clients/ts`);
      process.exit(1);
    }
  }
  console.log(`gen-spec: ${outputs.map(([path]) => path).join(' and ')} match ${specPath}`);
} else {
  for (const [path, text] of outputs) writeFileSync(path, text);
  console.log(`gen-spec: wrote ${outputs.map(([path]) => path).join(' and ')} (${frames.length} frames, ${records.size} records, ${errorCodes.length} error codes, ${closeCodes.length} close codes)`);
}
