#!/usr/bin/env node
// Serves the web chat demo: the page, the TypeScript client's build
// (clients/ts/dist) and development tokens minted with the local node's dev
// key. Loopback only: anyone who can reach /token can be anyone.
//
// node examples/web/serve.mjs [--port 8080] [--gateway ws://127.0.0.1:7700/ws] [--data-dir data]

import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { dirname, extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { devKey, mintToken } from '../../clients/ts/tools/dev-token.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const roots = { '/client/': resolve(here, '../../clients/ts/dist'), '/': join(here, 'public') };
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };

/** The demo's HTTP server (not yet listening). */
export function demoServer({ gateway, dataDir }) {
  let key;
  return createServer(async (req, res) => {
    const url = new URL(req.url, 'http://localhost');
    try {
      if (url.pathname === '/config.json') return send(res, 200, 'application/json', JSON.stringify({ gateway }));
      if (url.pathname === '/token') {
        const user = url.searchParams.get('user');
        const device = Number(url.searchParams.get('device') ?? '1');
        if (!/^\d+$/.test(user ?? '') || !Number.isInteger(device) || device < 1) return send(res, 400, 'text/plain', 'user and device are numbers\n');
        // Read on first use: the node creates its key at its first start.
        key ??= devKey(dataDir);
        return send(res, 200, 'text/plain', mintToken(key, { user: BigInt(user), device, ttl: 3600 }));
      }
      const [prefix, root] = Object.entries(roots).find(([p]) => url.pathname.startsWith(p));
      const path = normalize(join(root, url.pathname.slice(prefix.length) || 'index.html'));
      if (!path.startsWith(root)) return send(res, 403, 'text/plain', 'forbidden\n');
      return send(res, 200, types[extname(path)] ?? 'application/octet-stream', await readFile(path));
    } catch (err) {
      const missing = err.code === 'ENOENT';
      send(res, missing ? 404 : 500, 'text/plain', missing ? 'not found\n' : `${err.message}\n`);
    }
  });
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, fallback) => {
    const at = process.argv.indexOf(`--${name}`);
    return at > 0 ? process.argv[at + 1] : fallback;
  };
  const port = Number(arg('port', '8080'));
  const gateway = arg('gateway', 'ws://127.0.0.1:7700/ws');
  const dataDir = resolve(arg('data-dir', 'data'));
  demoServer({ gateway, dataDir }).listen(port, '127.0.0.1', () => {
    console.log(`web demo on http://127.0.0.1:${port}/?user=1&to=2 and http://127.0.0.1:${port}/?user=2&to=1`);
    console.log(`gateway ${gateway}, dev key from ${dataDir}/keys/dev-signing.pk8`);
  });
}
