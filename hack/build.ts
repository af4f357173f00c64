// Bundles the two entry points into single files that run with no node_modules.
import { build } from 'esbuild';
import { mkdir, writeFile } from 'node:fs/promises';
import { BUNDLE_OPTIONS as common } from './lib/bundle-options.ts';

await mkdir('dist', { recursive: true });
await Promise.all([
  // Whitespace-minified: a bundled dependency's non-Latin-1 comment would otherwise make V8 keep
  // the whole bundle as a two-byte string (~1 MB of RSS). Names stay, so stack traces still read.
  build({ ...common, entryPoints: ['controller/src/cli.ts'], outfile: 'dist/controller.js', minifyWhitespace: true }),
  build({ ...common, entryPoints: ['init-waiter/src/main.ts'], outfile: 'dist/init-waiter.js', minify: true }),
]);
// Lets `node dist/*.js` load as ESM wherever the bundles are copied with this file.
await writeFile('dist/package.json', JSON.stringify({ type: 'module' }) + '\n');
