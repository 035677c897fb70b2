// What the client adds to a web app: dist/index.js bundled by esbuild (ESM,
// minified, for browsers, ES2022) in memory, for two entry points: the whole
// package, and the codec alone (decodeMessage and encodeMessage, to show what
// tree-shaking leaves). Prints a Markdown table (stderr) of the minified and
// gzip -9 bytes and the modules each bundle keeps, and one JSON line (stdout).
// Usage (after `npx tsc -p tsconfig.json`): node scripts/bundle-size.mjs

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const pkg = fileURLToPath(new URL('..', import.meta.url));
const entries = {
  whole: "export * from './dist/index.js';",
  codec: "export { decodeMessage, encodeMessage } from './dist/index.js';",
};

if (!existsSync(new URL('../dist/index.js', import.meta.url))) {
  console.error('error: dist/index.js is missing; build first: npx tsc -p tsconfig.json');
  process.exit(1);
}

// esbuild's JS API runs a native binary that its postinstall puts in place; an
// install that skipped scripts loads the package but fails at the first build.
let esbuild;
try {
  esbuild = createRequire(import.meta.url)('esbuild');
  await esbuild.build({ stdin: { contents: '' }, write: false });
} catch (err) {
  console.error(`error: esbuild cannot run (${err.message.split('\n')[0]})`);
  console.error('fix: npm ci in clients/ts, or if its postinstall was skipped: node node_modules/esbuild/install.js');
  process.exit(1);
}

const results = {};
for (const [name, contents] of Object.entries(entries)) {
  const out = await esbuild.build({
    stdin: { contents, resolveDir: pkg, sourcefile: `${name}-entry.js` },
    bundle: true,
    write: false,
    metafile: true,
    format: 'esm',
    minify: true,
    platform: 'browser',
    target: 'es2022',
    logLevel: 'error',
  });
  const code = out.outputFiles[0].contents;
  const [meta] = Object.values(out.metafile.outputs);
  results[name] = {
    min: code.length,
    gzip: gzipSync(code, { level: 9 }).length,
    // Minified bytes each module of dist/ contributes, largest first.
    modules: Object.fromEntries(
      Object.entries(meta.inputs)
        .filter(([path, input]) => path.startsWith('dist/') && input.bytesInOutput > 0)
        .map(([path, input]) => [path.slice('dist/'.length), input.bytesInOutput])
        .sort((a, b) => b[1] - a[1]),
    ),
  };
}

const n = (x) => x.toLocaleString('en-US');
console.error(`esbuild ${esbuild.version}, node ${process.version}`);
console.error('| bundle | minified | gzip -9 | modules kept (minified bytes) |');
console.error('|---|---:|---:|---|');
for (const [name, r] of Object.entries(results)) {
  const kept = Object.entries(r.modules).map(([module, bytes]) => `${module} ${n(bytes)}`);
  console.error(`| ${name} | ${n(r.min)} B | ${n(r.gzip)} B | ${kept.join(', ')} |`);
}
console.log(JSON.stringify({ esbuild: esbuild.version, ...results }));
