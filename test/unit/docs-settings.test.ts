// The documentation and the code name the same flags and settings: every PNC_* variable
// and --flag the docs mention exists in the code, and every setting and flag of the two
// programs is documented. Reads README.md and every Markdown file under docs/.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { flagName, SETTINGS } from '../../controller/src/agent/config.ts';
import { PREPARE_UNINSTALL_OPTIONS } from '../../controller/src/commands/prepare-uninstall.ts';
import { REDIRECT_COMMAND_OPTIONS, REDIRECT_SETTING_OPTIONS } from '../../controller/src/commands/redirect.ts';
import { RUN_OPTIONS } from '../../controller/src/commands/run.ts';
import { WAITER_OPTIONS, WAITER_SETTINGS } from '../../init-waiter/src/options.ts';

const ROOT = join(import.meta.dirname, '../..');

function markdownUnder(dir: string): string[] {
  if (!existsSync(join(ROOT, dir))) return [];
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.md'))
    .map((file) => join(dir, file));
}

const docFiles = ['README.md', ...markdownUnder('docs')];
const docs = docFiles.map((file) => readFileSync(join(ROOT, file), 'utf8')).join('\n');

/** Source of the harness (hack/, test/, .ci/), comment lines dropped: where its own variables and flags are defined. */
function harnessSource(): string {
  return ['hack', 'test', '.ci']
    .flatMap((dir) => readdirSync(join(ROOT, dir), { recursive: true, withFileTypes: true }))
    .filter((entry) => entry.isFile() && !entry.parentPath.includes('/test/golden'))
    .map((entry) => join(entry.parentPath, entry.name))
    .filter((path) => /\.(ts|sh)$|\/\.ci\//.test(path) && !path.endsWith('docs-settings.test.ts'))
    .map((path) => readFileSync(path, 'utf8'))
    .join('\n')
    .split('\n')
    .filter((line) => !/^\s*(\/\/|#|\*)/.test(line))
    .join('\n');
}
const harness = harnessSource();

// The product's own flags and variables, from the tables the programs parse with.
const controllerFlags = new Set(
  [...Object.keys(RUN_OPTIONS), ...Object.keys(REDIRECT_COMMAND_OPTIONS), ...Object.keys(PREPARE_UNINSTALL_OPTIONS)].map((name) => `--${name}`),
);
const waiterFlags = new Set(Object.keys(WAITER_OPTIONS).map((name) => `--${name}`));
const productFlags = new Set([...controllerFlags, ...waiterFlags]);
const productVariables = new Set([...SETTINGS.map((s) => s.env), ...Object.values(WAITER_SETTINGS).map((s) => s.env)]);

/**
 * Flags of other programs the docs show (iptables, kubectl, crictl, kube-apiserver, istio-iptables,
 * buildah, helm, Node, vitest, ...). Each must still be mentioned, so this list cannot go stale.
 */
const OTHER_PROGRAMS_FLAGS = new Set([
  // iptables, iptables-restore
  '--comment',
  '--dport',
  '--dports',
  '--to-ports',
  '--noflush',
  '--wait',
  // kubectl
  '--raw',
  '--for',
  '--server-side',
  '--field-selector',
  '--overwrite',
  '--previous',
  '--as',
  '--as-group',
  // prettier
  '--check',
  // crictl
  '--template',
  '--namespace',
  '--name',
  '--state',
  // kube-apiserver
  '--authorization-mode',
  '--runtime-config',
  '--feature-gates',
  '--kubelet-preferred-address-types',
  // nsenter, setpriv
  '--net',
  '--pdeathsig',
  // istio-iptables (istio-validation)
  '--run-validation',
  '--skip-rule-apply',
  '--probe-timeout',
  // docker, buildah, mmdebstrap
  '--target',
  '--layers',
  '--pull',
  '--network',
  '--variant',
  // helm, istioctl
  '--set',
  '--reuse-values',
  '--create-namespace',
  '--take-ownership',
  '--no-hooks',
  '--force-conflicts',
  '--kube-version',
  '--show-only',
  // node, vitest
  '--max-semi-space-size',
  '--jitless',
  '--no-jitless',
  '--no-opt',
  '--no-maglev',
  '--cpu-prof',
  '--max-old-space-size',
  '--project',
]);

const mentionedFlags = new Set([...docs.matchAll(/(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?![\w])/g)].map((m) => `--${m[1]}`));
const mentionedVariables = new Set([...docs.matchAll(/\bPNC_[A-Z0-9_]*[A-Z0-9]\b/g)].map((m) => m[0]));
/** `PNC_WAITER_*`-style mentions: a family of variables. */
const mentionedPrefixes = new Set([...docs.matchAll(/\b(PNC_[A-Z0-9_]*_)\*/g)].map((m) => m[1]!));

/**
 * A harness script defines the flag: a parseArgs option key, a shell `case` label, or an
 * `argv.includes('--flag')` test. (Mere mentions do not count: scripts pass our own flags on.)
 */
function harnessDefinesFlag(flag: string): boolean {
  const name = flag.slice(2);
  return [`(^|[\\s{,])'?${name}'?: \\{ type:`, `^\\s*${flag}(\\|[^)]*)?\\)`, `includes\\('${flag}'\\)`].some((pattern) =>
    new RegExp(pattern, 'm').test(harness),
  );
}

describe('documentation and code agree', () => {
  it('reads the docs', () => {
    expect(docFiles).toContain('README.md');
    expect(mentionedFlags.size).toBeGreaterThan(20);
    expect(mentionedVariables.size).toBeGreaterThan(10);
  });

  it('every PNC_* variable the docs mention is read by the code', () => {
    const unknown = [...mentionedVariables].filter((name) => !productVariables.has(name) && !new RegExp(`\\b${name}\\b`).test(harness));
    expect(unknown, `documented but read nowhere: ${unknown.join(' ')}`).toEqual([]);
    const emptyFamilies = [...mentionedPrefixes].filter((prefix) => ![...productVariables].some((name) => name.startsWith(prefix)));
    expect(emptyFamilies, `documented variable families with no member: ${emptyFamilies.join(' ')}`).toEqual([]);
  });

  it('every --flag the docs mention is a flag of ours, of a harness script, or of another program named in the list', () => {
    const unknown = [...mentionedFlags].filter((flag) => !productFlags.has(flag) && !OTHER_PROGRAMS_FLAGS.has(flag) && !harnessDefinesFlag(flag));
    expect(unknown, `documented but defined nowhere: ${unknown.join(' ')}`).toEqual([]);
    const stale = [...OTHER_PROGRAMS_FLAGS].filter((flag) => !mentionedFlags.has(flag));
    expect(stale, `listed as other programs' flags but no longer in the docs: ${stale.join(' ')}`).toEqual([]);
    const shadowing = [...OTHER_PROGRAMS_FLAGS].filter((flag) => productFlags.has(flag));
    expect(shadowing, `flags of ours listed as other programs': ${shadowing.join(' ')}`).toEqual([]);
  });

  it('documents every setting of the agent (variable and flag) and every flag of the redirect tools', () => {
    const missingVariables = SETTINGS.map((s) => s.env).filter((env) => !new RegExp(`\\b${env}\\b`).test(docs));
    expect(missingVariables, `settings not documented: ${missingVariables.join(' ')}`).toEqual([]);
    const missingFlags = [...controllerFlags].filter((flag) => !mentionedFlags.has(flag));
    expect(missingFlags, `flags not documented: ${missingFlags.join(' ')}`).toEqual([]);
    // The redirect tools take the node settings that shape rules, under the agent's flag names.
    expect(Object.keys(REDIRECT_SETTING_OPTIONS).every((name) => SETTINGS.some((s) => flagName(s.env) === `--${name}`))).toBe(true);
  });

  it('documents every init-waiter flag and variable', () => {
    const missing = Object.values(WAITER_SETTINGS)
      .flatMap((s) => [s.flag, s.env])
      .filter((name) => (name.startsWith('--') ? !mentionedFlags.has(name) : !mentionedVariables.has(name)));
    expect(missing, `init-waiter options not documented: ${missing.join(' ')}`).toEqual([]);
    expect(waiterFlags.has('--help') && mentionedFlags.has('--help')).toBe(true);
  });
});
