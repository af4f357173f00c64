// Bundles the two entry points into single files that run with no node_modules.
import { build } from 'esbuild';
import { mkdir, writeFile } from 'node:fs/promises';

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  legalComments: 'none',
  logLevel: 'warning',
  // Some bundled dependencies are CommonJS and call require() for Node built-ins.
  banner: { js: "import { createRequire as __pncCreateRequire } from 'node:module'; const require = __pncCreateRequire(import.meta.url);" },
} as const;

await mkdir('dist', { recursive: true });
await Promise.all([
  build({ ...common, entryPoints: ['controller/src/cli.ts'], outfile: 'dist/controller.js' }),
  build({ ...common, entryPoints: ['init-waiter/src/main.ts'], outfile: 'dist/init-waiter.js', minify: true }),
]);
// Lets `node dist/*.js` load as ESM wherever the bundles are copied with this file.
await writeFile('dist/package.json', JSON.stringify({ type: 'module' }) + '\n');
