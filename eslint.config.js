import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Import boundaries (no-restricted-imports). A later block replaces the rule's options for
// the files it matches, so each block lists every boundary that applies to its files.
const moduleInternals = {
  regex: '/(redirect|pod-contract)/(?!index\\.ts$)[^/]+$',
  message: 'Import the redirect engine and the pod contract through their index.ts; their other files are internals.',
};
// test/ may import the harness in hack/lib; the harness and the hack/ scripts never import test/.
const harnessStandsAlone = {
  regex: '(^|/)test/|^vitest(/|$)',
  message:
    'hack/ (the harness, the demo, the benchmarks) imports neither test/ nor vitest: put the shared helper in hack/lib and keep only vitest fixtures in test/support.',
};
const waiterReachesOnlyContract = {
  regex: '/controller/src/(?!pod-contract/index\\.ts$)',
  message: 'The init-waiter shares only the pod contract with the controller: import controller/src/pod-contract/index.ts.',
};

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'test/golden/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // Type-aware: a promise nobody awaits or handles would lose its failure silently.
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
    },
  },
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  {
    files: ['**/*.ts'],
    // The engine's own unit tests check its internals (ruleset diffing, step runner) directly.
    ignores: ['controller/src/redirect/**', 'controller/src/pod-contract/**', 'test/unit/redirect-*.test.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [moduleInternals] }] },
  },
  {
    files: ['hack/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [moduleInternals, harnessStandsAlone] }] },
  },
  {
    files: ['init-waiter/src/**/*.ts'],
    rules: { 'no-restricted-imports': ['error', { patterns: [moduleInternals, waiterReachesOnlyContract] }] },
  },
);
