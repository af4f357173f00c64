import { defineConfig } from 'vitest/config';

// Three projects so a quick `npm run test:unit` needs neither root nor a control plane.
// unit: pure functions. netns: real network namespaces and iptables (root).
// cluster: a real kube-apiserver + etcd started once per run by the global setup (root for the simulator).
export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      { test: { name: 'netns', include: ['test/netns/**/*.test.ts'], testTimeout: 60_000, hookTimeout: 60_000 } },
      {
        test: {
          name: 'cluster',
          include: ['test/cluster/**/*.test.ts', 'test/e2e/**/*.test.ts'],
          globalSetup: ['test/support/cluster-global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
