// `npm test`: build, typecheck, lint, format check, then every vitest project; the last line is "N passed, N failed".
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { countReport, type VitestReport } from './lib/vitest-report.ts';

const ok = (argv: string[], env: Record<string, string> = {}) =>
  spawnSync(argv[0]!, argv.slice(1), { stdio: 'inherit', env: { ...process.env, ...env } }).status === 0;

// The Debian packages the suites need (as root: installed, saying why; else one line naming the command).
if (!ok(['bash', 'hack/install-deps.sh'])) process.exit(1);

let passed = 0;
let failed = 0;
for (const [name, args] of [
  ['build', [process.execPath, 'hack/build.ts']],
  ['typecheck', ['npx', 'tsc', '-p', 'tsconfig.json']],
  ['lint', ['npx', 'eslint', '.']],
  ['format', ['npx', 'prettier', '--check', '--log-level=warn', '**/*.{ts,js}']],
] as const) {
  console.log(`\n== ${name}`);
  if (ok([...args])) passed++;
  else {
    failed++;
    console.log(`FAILED: ${name}`);
  }
}

mkdirSync('.test-results', { recursive: true });
// The real-node projects run alone after the others, the lab node's, then the VM node's: their
// kubelets and pods (and the emulated guest) would otherwise share the two cores with every
// other suite. Then, on the oldest Kubernetes release we support, what depends on the release:
// the install of every overlay and the chart, the admission policies against forged marks, the
// injection, and one mesh pod on a real node. Arguments (e.g. --project X) make one run, on the
// newest release. vitest ORs --project filters, so the first phase names its projects.
const OLDEST_RELEASE = 'v1.35.4';
const onOldest = { PNC_KUBERNETES_VERSION: OLDEST_RELEASE };
const extra = process.argv.slice(2);
const phases: { args: string[]; env?: Record<string, string> }[] = extra.length
  ? [{ args: extra }]
  : [
      { args: ['--project', 'unit', '--project', 'netns', '--project', 'cluster'] },
      { args: ['--project', 'node'] },
      // The lab node beside the VM node runs CRI-O, OpenShift's runtime.
      { args: ['--project', 'vm'], env: { PNC_NODE_RUNTIME: 'cri-o' } },
      {
        args: [
          '--project',
          'cluster',
          ...['control-plane', 'deploy-manifests', 'deploy-admission-policies', 'deploy-injection', 'deploy-rbac', 'chart'].map(
            (f) => `test/cluster/${f}.test.ts`,
          ),
        ],
        env: onOldest,
      },
      { args: ['--project', 'node', 'test/node/manual-injection.test.ts'], env: onOldest },
    ];
// Counts, across every suite, the packets of our host-side ranges that leave through the
// machine's uplink (hack/uplink-audit.sh): a check of its own, as root.
const asRoot = process.getuid?.() === 0;
const auditUplink = asRoot && ok(['bash', 'hack/uplink-audit.sh', 'start', '--guard']);
if (asRoot && !auditUplink) {
  failed++;
  console.log('FAILED: uplink audit did not start');
}
let skipped = 0;
for (const [index, { args, env }] of phases.entries()) {
  const report = `.test-results/vitest-${index}.json`;
  rmSync(report, { force: true });
  const settings = Object.entries(env ?? {}).map(([name, value]) => `${name}=${value}`);
  console.log(`\n== vitest ${args.join(' ')}${settings.length ? ` (${settings.join(' ')})` : ''}`);
  ok(['npx', 'vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...args], env);
  try {
    const counts = countReport(JSON.parse(readFileSync(report, 'utf8')) as VitestReport);
    passed += counts.passed;
    failed += counts.failed;
    skipped += counts.skipped;
  } catch (error) {
    console.log(`FAILED: no vitest report (${(error as Error).message})`);
    failed++;
  }
}
if (auditUplink) {
  console.log('\n== uplink');
  if (ok(['bash', 'hack/uplink-audit.sh', 'check'])) passed++;
  else {
    failed++;
    console.log('FAILED: uplink');
  }
} else if (!asRoot) console.log('\n== uplink: skipped (counting packets on the uplink needs root)');
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed === 0 ? 0 : 1);
