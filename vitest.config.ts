import { defineConfig } from 'vitest/config';

// Projects so a quick `npm run test:unit` needs neither root nor a control plane.
// unit: pure functions. netns: real network namespaces and iptables (root).
// cluster: a real kube-apiserver + etcd started once per run by the global setup (root for the simulator).
// node: the same plus a real node; hack/run-tests.ts runs it after the others.
// vm: the same plus a second node in a QEMU guest; only with `npm run test:vm` (not in `npm test` yet).
export default defineConfig({
  test: {
    projects: [
      // Property tests run hundreds of cases: on two busy cores (CI runs unit beside netns and cluster) they need more than 5 s.
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 30_000 } },
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
      {
        // A real kubelet + containerd node, started once per run (root; skipped otherwise).
        test: {
          name: 'node',
          include: ['test/node/**/*.test.ts'],
          globalSetup: ['test/support/node-global-setup.ts'],
          testTimeout: 180_000,
          hookTimeout: 600_000,
          fileParallelism: false,
        },
      },
      {
        // The VM node (a QEMU guest under software emulation) beside the lab node: minutes to
        // start; `npm run test:vm` runs it alone (root; skipped otherwise).
        test: {
          name: 'vm',
          include: ['test/vm/**/*.test.ts'],
          globalSetup: ['test/support/vm-global-setup.ts'],
          testTimeout: 600_000,
          hookTimeout: 1_800_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
