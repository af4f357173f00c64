// `npm run bench:apply [-- --pods N] [--mode legacy|nft]`: programs N fresh network
// namespaces (both families, and ::6/128 on lo) with the engine and, side by side, with a
// baseline that runs one iptables process per rule (as the original bash script did; it
// adds no address), and prints per-pod p50/p99 and the ratio. Root only; every netns it
// creates is deleted.
import { spawn, spawnSync } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import {
  applyRedirect,
  detectIptablesMode,
  parseIptablesMode,
  planFromPod,
  renderPlan,
  verifyRedirect,
  type IptablesMode,
} from '../controller/src/redirect/index.ts';
import { positiveInteger } from './lib/flags.ts';
import { quantile } from './lib/stats.ts';

const { values } = parseArgs({ options: { pods: { type: 'string', default: '200' }, mode: { type: 'string' } } });
const pods = positiveInteger('pods', values.pods);
if (process.getuid?.() !== 0) {
  console.error('bench:apply needs root (it creates network namespaces and programs iptables in them)');
  process.exit(2);
}
const mode: IptablesMode = parseIptablesMode(values.mode, '--mode') ?? (await detectIptablesMode()).mode;

const plan = planFromPod({
  metadata: { namespace: 'bench', name: 'pod', annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': '5432' } },
});
const rendered = renderPlan(plan);

/** The same rules as individual iptables commands: one process per rule, like the original script. */
const baselineCommands = (['ipv4', 'ipv6'] as const).flatMap((family) => {
  const binary = `${family === 'ipv4' ? 'iptables' : 'ip6tables'}-${mode}`;
  return rendered[family]!.split('\n')
    .filter((line) => line.startsWith(':') || line.startsWith('-A '))
    .map((line) => [binary, '-w', '-t', 'nat', ...(line.startsWith(':') ? ['-N', line.slice(1).split(' ')[0]!] : line.split(' '))]);
});

function spawnAsync(argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(' ')}: exit ${code}: ${stderr}`))));
  });
}

const names: string[] = [];
function freshNetns(tag: string, index: number): string {
  const name = `pncbench-${process.pid}-${tag}${index}`;
  const result = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip netns add ${name}: ${result.stderr}`);
  names.push(name);
  return `/run/netns/${name}`;
}
function cleanup(): void {
  for (const name of names.splice(0)) spawnSync('ip', ['netns', 'del', name]);
}
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

async function timed(action: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await action();
  return performance.now() - start;
}

const results: { name: string; samples: number[] }[] = [];
try {
  const enginePaths = Array.from({ length: pods }, (_, i) => freshNetns('e', i));
  const baselinePaths = Array.from({ length: pods }, (_, i) => freshNetns('b', i));
  // Warm-up outside the measurement: page cache, first spawn.
  await applyRedirect(freshNetns('w', 0), plan, { mode });

  // The floor on this machine right now: one process started in a netns and waited for.
  const spawnCost: number[] = [];
  for (let i = 0; i < 50; i++) spawnCost.push(await timed(() => spawnAsync(['nsenter', `--net=${enginePaths[0]!}`, '--', 'true'])));

  const engine: number[] = [];
  const reapply: number[] = [];
  const verify: number[] = [];
  const baseline: number[] = [];
  for (let i = 0; i < pods; i++) {
    // Interleaved so background load hits both sides alike.
    engine.push(await timed(() => applyRedirect(enginePaths[i]!, plan, { mode })));
    baseline.push(
      await timed(async () => {
        for (const argv of baselineCommands) await spawnAsync(['nsenter', `--net=${baselinePaths[i]!}`, '--', ...argv]);
      }),
    );
    reapply.push(await timed(() => applyRedirect(enginePaths[i]!, plan, { mode })));
    verify.push(await timed(() => verifyRedirect(enginePaths[i]!, plan, { mode })));
  }
  // The baseline must have produced the same rules, or the comparison is meaningless.
  const check = await verifyRedirect(baselinePaths[0]!, plan, { mode });
  if (!check.ok) throw new Error(`baseline rules differ from the engine's:\n${check.diff}`);

  results.push(
    { name: `engine apply (fresh netns, ${plan.families.length} families, ::6)`, samples: engine },
    { name: `baseline: ${baselineCommands.length} iptables processes`, samples: baseline },
    { name: 'engine re-apply (already in place, no-op)', samples: reapply },
    { name: 'engine verify', samples: verify },
    { name: 'one process (nsenter --net=... true)', samples: spawnCost },
  );
} finally {
  cleanup();
}

const fmt = (ms: number) => ms.toFixed(1).padStart(8);
const load = loadavg()
  .map((value) => value.toFixed(2))
  .join(' ');
console.log(`\nbench:apply  pods=${pods}  iptables-${mode}  node ${process.version}  ${availableParallelism()} CPUs  load ${load}  (ms per pod)\n`);
console.log(`| ${'what'.padEnd(46)} | ${'p50'.padStart(8)} | ${'p99'.padStart(8)} |`);
console.log(`| ${'-'.repeat(46)} | ${'-'.repeat(8)} | ${'-'.repeat(8)} |`);
for (const { name, samples } of results) console.log(`| ${name.padEnd(46)} | ${fmt(quantile(samples, 0.5))} | ${fmt(quantile(samples, 0.99))} |`);
const [engine, baseline] = [results[0]!.samples, results[1]!.samples];
const ratio = quantile(baseline, 0.5) / quantile(engine, 0.5);
console.log(`\nbaseline p50 / engine p50 = ${ratio.toFixed(1)}x  (targets: engine p50 <= 10 ms, >= 4x)`);
