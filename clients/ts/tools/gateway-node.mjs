// Starts a real gateway node (the workspace's debug build, or GATEWAY_BIN) on
// free loopback ports with its own data directory, for the TypeScript
// client's tests, the browser tests and the web demo's tests.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { devKey } from './dev-token.mjs';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** The gateway binary: GATEWAY_BIN, else target/debug/gateway (built by `cargo build -p gateway`). */
export function gatewayBin() {
  const bin = process.env.GATEWAY_BIN ?? join(repo, 'target/debug/gateway');
  if (!existsSync(bin)) throw new Error(`no gateway binary at ${bin}: run \`cargo build -p gateway\` or set GATEWAY_BIN`);
  return bin;
}

/** A TCP port free on 127.0.0.1 now. */
export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A node: `start()` spawns it and waits for /readyz; `stop()` sends SIGTERM
 * (a drain) and waits for the exit; `kill()` is SIGKILL. The ports and the
 * data directory stay across restarts, so clients resume on the same node.
 * `config` is TOML appended to the node's config file.
 */
export class GatewayNode {
  constructor({ config = '', dataDir } = {}) {
    this.config = config;
    this.dataDir = dataDir ?? mkdtempSync(join(tmpdir(), 'gateway-ts-'));
    this.process = null;
  }

  async start() {
    this.wsPort ??= await freePort();
    this.adminPort ??= await freePort();
    const configPath = join(this.dataDir, 'gateway.toml');
    writeFileSync(configPath, `${this.config}\n`);
    const log = openSync(join(this.dataDir, 'gateway.log'), 'a');
    this.process = spawn(
      gatewayBin(),
      ['--config', configPath, '--workers', '1', '--listen', `127.0.0.1:${this.wsPort}`, '--admin', `127.0.0.1:${this.adminPort}`, '--data-dir', this.dataDir],
      { stdio: ['ignore', log, log] },
    );
    const child = this.process;
    const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
    this.exited = exited;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const status = await Promise.race([exited.then(() => 'exited'), this.ready()]);
      if (status === 'exited') throw new Error(`the gateway exited at start:\n${this.logTail()}`);
      if (status === true) break;
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`the gateway was not ready in 30 s:\n${this.logTail()}`);
      }
      await sleep(50);
    }
    this.key ??= devKey(this.dataDir);
    return this;
  }

  async ready() {
    try {
      const res = await fetch(`http://127.0.0.1:${this.adminPort}/readyz`);
      return res.status === 200;
    } catch {
      return false;
    }
  }

  /** SIGTERM (drain: GOAWAY to every session), then the exit, within `timeoutMs`. */
  async stop(timeoutMs = 20_000) {
    return this.signal('SIGTERM', timeoutMs);
  }

  async kill() {
    return this.signal('SIGKILL', 10_000);
  }

  async signal(signal, timeoutMs) {
    if (!this.process || this.process.exitCode !== null || this.process.signalCode !== null) return;
    this.process.kill(signal);
    const timer = setTimeout(() => this.process.kill('SIGKILL'), timeoutMs);
    const result = await this.exited;
    clearTimeout(timer);
    this.process = null;
    return result;
  }

  get url() {
    return `ws://127.0.0.1:${this.wsPort}/ws`;
  }

  logTail(lines = 30) {
    try {
      return readFileSync(join(this.dataDir, 'gateway.log'), 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}
