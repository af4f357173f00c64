// Builds dist/ (node hack/build.ts) when a bundle is missing or older than its sources,
// so the demo and the benchmark always run the code in the tree.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const BUNDLES = ['dist/controller.js', 'dist/init-waiter.js'];
const SOURCES = ['controller/src', 'init-waiter/src', 'hack/build.ts', 'hack/lib/bundle-options.ts', 'package-lock.json'];

function newestMtime(path: string): number {
  const stat = statSync(path, { throwIfNoEntry: false });
  if (!stat) return 0;
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(0, ...readdirSync(path).map((entry) => newestMtime(join(path, entry))));
}

/** Returns true when it had to build. Throws when the build fails. */
export function ensureBundles(): boolean {
  const oldestBundle = Math.min(...BUNDLES.map((bundle) => statSync(join(ROOT, bundle), { throwIfNoEntry: false })?.mtimeMs ?? 0));
  const newestSource = Math.max(...SOURCES.map((source) => newestMtime(join(ROOT, source))));
  if (oldestBundle > newestSource) return false;
  const result = spawnSync(process.execPath, ['hack/build.ts'], { cwd: ROOT, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`node hack/build.ts failed (exit ${result.status ?? result.signal})`);
  return true;
}
