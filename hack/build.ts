// Bundles the two entry points into single files that run with no node_modules.
import { build } from 'esbuild';
import { mkdir, writeFile } from 'node:fs/promises';
import { BUNDLE_OPTIONS as common, CONTROLLER_BUNDLE_OPTIONS } from './lib/bundle-options.ts';

await mkdir('dist', { recursive: true });
await Promise.all([
  build({ ...CONTROLLER_BUNDLE_OPTIONS, entryPoints: ['controller/src/cli.ts'], outfile: 'dist/controller.js' }),
  build({ ...common, entryPoints: ['init-waiter/src/main.ts'], outfile: 'dist/init-waiter.js', minify: true }),
]);
// Lets `node dist/*.js` load as ESM wherever the bundles are copied with this file.
await writeFile('dist/package.json', JSON.stringify({ type: 'module' }) + '\n');
