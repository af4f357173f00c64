// `npm run bench:waiter` (root): how fast the init-waiter lets a pod go once it is marked.
// The bundled waiter runs as UID 65534 in a test pod netns whose redirect rules the engine
// programmed, so every pass includes the real self-test. Prints numbers, asserts none.
import { spawnSync } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { applyRedirect, planFromPod, writeNetnsRecord } from '../controller/src/redirect/index.ts';
import { volumeDir, writeAnnotationsVolume } from './lib/downward-api.ts';
import { isRoot, createRoutedNetns } from './lib/netns.ts';
import { bundleWaiter, markInitialized, startWaiter } from './lib/waiter-process.ts';
import type { WaiterBundle } from './lib/waiter-process.ts';
import { quantile } from './lib/stats.ts';

const LATENCY_RUNS = 100;
const COLD_START_RUNS = 30;
const ORIGINAL_POLL_SECONDS = 10;

if (!isRoot) {
  console.log('bench:waiter needs root (it creates network namespaces and iptables rules); run it as root');
  process.exit(1);
}

function summary(values: number[], unit: string, digits = 1): string {
  const sorted = [...values].sort((a, b) => a - b);
  const f = (n: number) => `${n.toFixed(digits)} ${unit}`;
  return `p50 ${f(quantile(sorted, 0.5))}, p99 ${f(quantile(sorted, 0.99))}, min ${f(sorted[0] as number)}, max ${f(sorted.at(-1) as number)}`;
}

/** The waiter's own report at exit: peak RSS (VmHWM), the anonymous part of its RSS, CPU time used. */
function usage(output: string): { peak: number; anonymous: number; cpu: number } {
  const match = /peak RSS (\d+(?:\.\d+)?) MiB, anonymous (\d+(?:\.\d+)?) MiB, cpu (\d+) ms/.exec(output);
  if (!match) throw new Error(`no usage report in waiter output:\n${output}`);
  return { peak: Number(match[1]), anonymous: Number(match[2]), cpu: Number(match[3]) };
}

function emptyNodePeakMiB(): number {
  const script = "const s=require('fs').readFileSync('/proc/self/status','utf8');console.log(/VmHWM:\\s+(\\d+)/.exec(s)[1])";
  const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  return Number(result.stdout.trim()) / 1024;
}

let bundle: WaiterBundle | undefined;
const sandbox = createRoutedNetns();
try {
  bundle = bundleWaiter();
  await applyRedirect(sandbox.pod.path, planFromPod({ metadata: { namespace: 'bench', name: 'waiter' } }));
  const netns = { path: sandbox.pod.path, inode: sandbox.inode };
  const unmarked = { 'sidecar.istio.io/status': '{"containers":["istio-proxy"]}' };

  // 1. The pod waits (volume present, no mark yet); the controller's mark lands as one atomic swap, then its netns record.
  const latencies: number[] = [];
  const peakRss: number[] = [];
  const anonymousRss: number[] = [];
  const cpuMs: number[] = [];
  for (let i = 0; i < LATENCY_RUNS; i++) {
    const volume = volumeDir('pnc-bench-podinfo-');
    try {
      writeAnnotationsVolume(volume, unmarked);
      await writeNetnsRecord(netns, '');
      const run = startWaiter(bundle, { netnsPath: sandbox.pod.path, args: ['--annotations-file', join(volume, 'annotations'), '--timeout', '30'] });
      await run.waitForOutput(/waiting: no pod-network-controller\.io\/status annotation yet/);
      const written = performance.now();
      await markInitialized(volume, netns, unmarked);
      const exit = await run.exited;
      if (exit.code !== 0) throw new Error(`run ${i}: waiter exited ${exit.code}:\n${run.output()}`);
      latencies.push(exit.at - written);
      const used = usage(run.output());
      peakRss.push(used.peak);
      anonymousRss.push(used.anonymous);
      cpuMs.push(used.cpu);
    } finally {
      rmSync(volume, { recursive: true, force: true });
    }
  }

  // 2. Cold start: process spawn to its first line, and to exit when the mark is already there.
  const firstLine: number[] = [];
  const toReady: number[] = [];
  for (let i = 0; i < COLD_START_RUNS; i++) {
    const volume = volumeDir('pnc-bench-podinfo-');
    try {
      await markInitialized(volume, netns, unmarked);
      const spawned = performance.now();
      const run = startWaiter(bundle, { netnsPath: sandbox.pod.path, args: ['--annotations-file', join(volume, 'annotations'), '--timeout', '30'] });
      await run.waitForOutput(/init-waiter \[/);
      firstLine.push(performance.now() - spawned);
      const exit = await run.exited;
      if (exit.code !== 0) throw new Error(`cold run ${i}: waiter exited ${exit.code}:\n${run.output()}`);
      toReady.push(exit.at - spawned);
    } finally {
      rmSync(volume, { recursive: true, force: true });
    }
  }

  const bundleKiB = statSync(bundle.script).size / 1024;
  console.log(
    `init-waiter benchmark: Node ${process.version}, bundle ${bundleKiB.toFixed(1)} KiB, UID 65534 in a test pod netns with engine-programmed rules (IPv4+IPv6 self-test)`,
  );
  console.log(`mark and netns record written -> waiter exit 0, ${LATENCY_RUNS} runs: ${summary(latencies, 'ms')}`);
  console.log(`cold start, spawn -> first log line, ${COLD_START_RUNS} runs: ${summary(firstLine, 'ms')}`);
  console.log(`cold start, spawn -> exit 0 with the mark already present, ${COLD_START_RUNS} runs: ${summary(toReady, 'ms')}`);
  console.log(`peak RSS (VmHWM, includes the node binary's file pages), ${LATENCY_RUNS} runs: ${summary(peakRss, 'MiB')}`);
  console.log(`anonymous RSS at exit (the waiter's own memory), ${LATENCY_RUNS} runs: ${summary(anonymousRss, 'MiB')}`);
  console.log(`CPU time of a whole waiter run (user+system), ${LATENCY_RUNS} runs: ${summary(cpuMs, 'ms', 0)}`);
  console.log(`for scale: an empty \`node -e ''\` peaks at ${emptyNodePeakMiB().toFixed(1)} MiB VmHWM on this machine`);
  // A 10 s poll started at an arbitrary moment before the mark: the wait is uniform in [0, 10 s).
  console.log(
    `baseline (analytical, not measured): the original init container polling every ${ORIGINAL_POLL_SECONDS} s: ` +
      `p50 ${(ORIGINAL_POLL_SECONDS * 0.5 * 1000).toFixed(0)} ms, p99 ${(ORIGINAL_POLL_SECONDS * 0.99 * 1000).toFixed(0)} ms`,
  );
} finally {
  bundle?.dispose();
  sandbox.destroy();
}
