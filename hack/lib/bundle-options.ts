// The esbuild options of the shipped bundles, shared with benchmarks that bundle probes
// so they measure what production would run.
import type { BuildOptions } from 'esbuild';

export const BUNDLE_OPTIONS = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  legalComments: 'none',
  logLevel: 'warning',
  // Some bundled dependencies are CommonJS and call require() for Node built-ins.
  banner: { js: "import { createRequire as __pncCreateRequire } from 'node:module'; const require = __pncCreateRequire(import.meta.url);" },
} as const satisfies BuildOptions;
