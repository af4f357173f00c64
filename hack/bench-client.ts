// `npm run bench:client [-- --pods N] [--runs R]`: why the agent has its own small API client.
// Bundles two probes exactly as the shipped bundle is built, one with client-node's ListWatch
// (the baseline the stack named) and one with the agent's informers, runs each R times,
// alternating, against the local control plane with N pods on one node, and prints bundle
// size, time to a synced cache and memory side by side.
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createNamespace, deleteNamespace, ensureNode } from './lib/kube-objects.ts';
import { BUNDLE_OPTIONS } from './lib/bundle-options.ts';
import { positiveInteger } from './lib/flags.ts';
import { ensureLocalCluster } from './lib/local-cluster.ts';
import { quantile } from './lib/stats.ts';

const { values: flags } = parseArgs({ options: { pods: { type: 'string', default: '110' }, runs: { type: 'string', default: '3' } } });
const POD_COUNT = positiveInteger('pods', flags.pods);
const RUNS = positiveInteger('runs', flags.runs);
const PROBES = { 'client-node ListWatch (baseline)': 'client-node.ts', 'agent informers (shipped)': 'own-client.ts' } as const;

interface ProbeResult {
  syncMs: number;
  rssMb: number;
  hwmMb: number;
  heapMb: number;
}

const median = (values: number[]) => quantile(values, 0.5);

const { kubeconfig } = await ensureLocalCluster();
const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
const core = kc.makeApiClient(CoreV1Api);
const suffix = randomBytes(3).toString('hex');
const nodeName = `bench-client-${suffix}`;
const namespace = `pnc-bench-client-${suffix}`;
const workDir = mkdtempSync(join(tmpdir(), 'pnc-bench-client-'));

try {
  await ensureNode(kc, nodeName);
  await createNamespace(kc, namespace);
  for (let i = 0; i < POD_COUNT; i += 10) {
    await Promise.all(
      Array.from({ length: Math.min(10, POD_COUNT - i) }, (_, j) =>
        core.createNamespacedPod({
          namespace,
          body: {
            metadata: { name: `pod-${i + j}`, annotations: { 'sidecar.istio.io/status': '{"containers":["istio-proxy"]}' } },
            spec: {
              nodeName,
              containers: [
                { name: 'app', image: 'app' },
                { name: 'istio-proxy', image: 'proxy' },
              ],
            },
          },
        }),
      ),
    );
  }

  const bundles = Object.fromEntries(
    await Promise.all(
      Object.entries(PROBES).map(async ([name, file]) => {
        const outfile = join(workDir, file.replace('.ts', '.js'));
        await build({ ...BUNDLE_OPTIONS, entryPoints: [join(import.meta.dirname, 'lib/client-probe', file)], outfile });
        return [name, outfile] as const;
      }),
    ),
  );
  const results = new Map<string, ProbeResult[]>(Object.keys(PROBES).map((name) => [name, []]));
  for (let run = 0; run < RUNS; run++) {
    for (const [name, outfile] of Object.entries(bundles)) {
      const child = spawnSync(process.execPath, [outfile, kubeconfig, nodeName], {
        cwd: workDir, // no node_modules reachable: the bundle must stand alone, as in the image
        env: { ...process.env, PNC_BENCH_PODS: String(POD_COUNT) },
        encoding: 'utf8',
        timeout: 60_000,
      });
      const line = child.stdout.trim().split('\n').pop() ?? '';
      if (child.status !== 0 || !line.startsWith('{')) throw new Error(`probe ${name} failed (exit ${child.status}): ${child.stderr.slice(0, 2000)}`);
      results.get(name)!.push(JSON.parse(line) as ProbeResult);
    }
  }

  const rows = [...results].map(([name, samples]) => ({
    name,
    bundleKb: Math.round(statSync(bundles[name]!).size / 1024),
    syncMs: median(samples.map((s) => s.syncMs)),
    rssMb: median(samples.map((s) => s.rssMb)),
    hwmMb: median(samples.map((s) => s.hwmMb)),
    heapMb: median(samples.map((s) => s.heapMb)),
  }));
  console.log(`\nbench:client  pods on the node=${POD_COUNT}  runs=${RUNS} (medians)  node ${process.version}\n`);
  console.log(`| ${'client'.padEnd(34)} | bundle KiB | synced ms | RSS MB | peak RSS MB | heap MB |`);
  console.log(`| ${'-'.repeat(34)} | ---------- | --------- | ------ | ----------- | ------- |`);
  for (const row of rows) {
    const cells = [row.bundleKb, row.syncMs, row.rssMb, row.hwmMb, row.heapMb].map((value, i) => String(value).padStart([10, 9, 6, 11, 7][i]!));
    console.log(`| ${row.name.padEnd(34)} | ${cells.join(' | ')} |`);
  }
  const [baseline, shipped] = rows as [(typeof rows)[0], (typeof rows)[0]];
  console.log(`\nRSS saved: ${(baseline.rssMb - shipped.rssMb).toFixed(1)} MB; bundle ${(baseline.bundleKb / shipped.bundleKb).toFixed(1)}x smaller`);
  console.log(JSON.stringify({ pods: POD_COUNT, runs: RUNS, rows }));
} finally {
  await deleteNamespace(kc, namespace).catch(() => undefined);
  await core.deleteNode({ name: nodeName }).catch(() => undefined);
  rmSync(workDir, { recursive: true, force: true });
}
