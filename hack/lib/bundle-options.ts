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

/**
 * dist/controller.js from the entry point `cli.ts`. Whitespace-minified: a bundled dependency's
 * non-Latin-1 comment would otherwise make V8 keep the whole bundle as a two-byte string (~1 MB
 * of RSS). Names stay, so stack traces still read.
 */
export const CONTROLLER_BUNDLE_OPTIONS = { ...BUNDLE_OPTIONS, minifyWhitespace: true } as const satisfies BuildOptions;
