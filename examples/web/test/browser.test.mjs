// The web demo in real headless Chromium (Debian's /usr/bin/chromium, or
// CHROMIUM) against a real gateway node: two pages chat with marks, typing
// and presence; one page's connection is cut and restored and it gets what
// it missed exactly once; a bad token shows the terminal close.
// Screenshots go to target/browser-artifacts/.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { GatewayNode } from '../../../clients/ts/tools/gateway-node.mjs';
import { demoServer } from '../serve.mjs';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const artifacts = resolve(repo, 'target/browser-artifacts');
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
if (!existsSync(executablePath)) throw new Error(`no Chromium at ${executablePath}: apt-get install chromium, or set CHROMIUM`);
if (!existsSync(resolve(repo, 'clients/ts/dist/index.js'))) throw new Error('the TypeScript client is not built: npx tsc -p clients/ts/tsconfig.json');

const TIMEOUT = 20_000;
let node;
let server;
let base;
let browser;

before(async () => {
  node = await new GatewayNode({ config: '[drain]\nwindow_ms = 200\ndeadline_ms = 2000\n' }).start();
  server = demoServer({ gateway: node.url, dataDir: node.dataDir });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}`;
  // As root, without a sandbox; no background traffic (this machine has no network beyond loopback).
  browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  mkdirSync(artifacts, { recursive: true });
});

after(async () => {
  await browser?.close();
  server?.close();
  await node?.stop();
});

/** A page of the demo in its own browser context (its own window: both stay visible). */
async function open(query) {
  const context = await browser.newContext({ viewport: { width: 480, height: 640 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err));
  await page.goto(`${base}/?${query}`);
  return { page, context, errors };
}

const live = (page) => page.waitForSelector('#state[data-state="live"]', { timeout: TIMEOUT });
const incoming = (page) => page.$$eval('li.msg.in', (items) => items.map((li) => li.textContent));

async function send(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

test('two pages chat: marks, typing and presence; a cut connection resumes with nothing lost or repeated', async () => {
  const a = await open('user=21&to=22');
  const b = await open('user=22&to=21');
  await Promise.all([live(a.page), live(b.page)]);
  await a.page.waitForSelector('#presence[data-status="online"]', { timeout: TIMEOUT });

  // Typing shows on the other page before the message is sent.
  await a.page.fill('#text', 'hel');
  await b.page.waitForSelector('#typing:not([hidden])', { timeout: TIMEOUT });
  assert.match(await b.page.textContent('#typing'), /21 is typing/);
  await send(a.page, 'hello from 21');
  await b.page.waitForSelector('li.msg.in:has-text("hello from 21")', { timeout: TIMEOUT });
  // B shows it, so it acks (✓✓) and reads it (read) at once.
  await a.page.waitForSelector('li.msg.out .mark[data-status="read"]', { timeout: TIMEOUT });
  await send(b.page, 'hi 21');
  await a.page.waitForSelector('li.msg.in:has-text("hi 21")', { timeout: TIMEOUT });
  await a.page.screenshot({ path: resolve(artifacts, 'chat-a.png') });
  await b.page.screenshot({ path: resolve(artifacts, 'chat-b.png') });

  // Cut B: close its socket by restarting the node, and keep B from getting
  // back (its token requests fail) while A sends three messages.
  await b.page.route('**/token**', (route) => route.abort());
  await node.kill();
  await b.page.waitForSelector('#state:not([data-state="live"])', { timeout: TIMEOUT });
  await node.start();
  await live(a.page);
  for (const text of ['missed 1', 'missed 2', 'missed 3']) await send(a.page, text);
  await a.page.waitForFunction(() => document.querySelectorAll('li.msg.out .mark[data-status="stored"]').length === 3, null, { timeout: TIMEOUT });
  assert.notEqual(await b.page.getAttribute('#state', 'data-state'), 'live');
  await a.page.waitForSelector('#presence[data-status="offline"]', { timeout: TIMEOUT });

  // Restore B: it reconnects, resumes after its cursor, and gets each message once.
  await b.page.unroute('**/token**');
  await live(b.page);
  await b.page.waitForSelector('li.msg.in:has-text("missed 3")', { timeout: TIMEOUT });
  await a.page.waitForFunction(() => document.querySelectorAll('li.msg.out .mark[data-status="read"]').length === 4, null, { timeout: TIMEOUT });
  await a.page.waitForSelector('#presence[data-status="online"]', { timeout: TIMEOUT });
  assert.deepEqual(await incoming(b.page), ['hello from 21', 'missed 1', 'missed 2', 'missed 3']);
  assert.deepEqual(await incoming(a.page), ['hi 21']);
  await b.page.screenshot({ path: resolve(artifacts, 'resumed-b.png') });
  assert.deepEqual([...a.errors, ...b.errors], []);
  await a.context.close();
  await b.context.close();
});

test('a bad token shows the terminal close and no reconnect', async () => {
  const bad = await open('user=23&to=21&token=v1.bad');
  await bad.page.waitForSelector('#state[data-state="stopped"]', { timeout: TIMEOUT });
  assert.equal(await bad.page.textContent('#state'), 'closed 4003 (terminal)');
  await bad.page.screenshot({ path: resolve(artifacts, 'bad-token.png') });
  // Still stopped a while later: a terminal close is not retried.
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await bad.page.getAttribute('#state', 'data-state'), 'stopped');
  await bad.context.close();
});
