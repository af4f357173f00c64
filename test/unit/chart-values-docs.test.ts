// The chart's values and the documentation agree: docs/operating.md's chart values table
// names every value of values.yaml and nothing else, and each PNC_* setting of the agent has
// its chart value (the Configure table's column), which templates/configmap.yaml writes into
// that very variable.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SETTINGS } from '../../controller/src/agent/config.ts';

const ROOT = join(import.meta.dirname, '../..');
const CHART = join(ROOT, 'manifests/charts/pod-network-controller');
const values = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;
const configMapTemplate = readFileSync(join(CHART, 'templates/configmap.yaml'), 'utf8');
const operating = readFileSync(join(ROOT, 'docs/operating.md'), 'utf8');

/** Dotted paths of every value (a map with entries is walked into; anything else is a leaf). */
function leaves(node: unknown, prefix = ''): string[] {
  if (node === null || typeof node !== 'object' || Array.isArray(node) || Object.keys(node).length === 0) return [prefix];
  return Object.entries(node).flatMap(([key, child]) => leaves(child, prefix ? `${prefix}.${key}` : key));
}

/** First column of each row of the Markdown table that follows MARKER. */
function tableColumn(marker: string, column: number): string[] {
  const start = operating.indexOf(marker);
  if (start < 0) throw new Error(`docs/operating.md has no ${marker}`);
  const rows = operating.slice(start).split('\n').slice(1);
  const table = rows.slice(rows.findIndex((row) => row.startsWith('|')));
  return table
    .slice(
      0,
      table.findIndex((row) => !row.startsWith('|')),
    )
    .slice(2)
    .map((row) => row.split(' | ')[column]!.replace(/^\| /, '').replace(/`/g, ''));
}

// The downward API fills these three, not chart values.
const settings = SETTINGS.filter((s) => !['NODE_NAME', 'POD_NAMESPACE', 'POD_UID'].includes(s.env));
/** PNC_EXCLUDE_OUTBOUND_CIDRS -> excludeOutboundCidrs, LOG_LEVEL -> logLevel. */
const chartName = (env: string) =>
  env
    .replace(/^PNC_/, '')
    .toLowerCase()
    .replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

describe('the chart values and docs/operating.md agree', () => {
  it('documents every value of values.yaml in the chart values table, and only those', () => {
    const documented = tableColumn('<!-- chart-values', 0).map((path) => path.replace(/\.\*$/, ''));
    const covered = (leaf: string) => documented.filter((path) => leaf === path || leaf.startsWith(`${path}.`));
    const all = leaves(values);
    expect(all.length).toBeGreaterThan(30);
    expect(
      all.filter((leaf) => covered(leaf).length !== 1),
      'undocumented (or documented twice)',
    ).toEqual([]);
    expect(
      documented.filter((path) => !all.some((leaf) => leaf === path || leaf.startsWith(`${path}.`))),
      'documented but not in values.yaml',
    ).toEqual([]);
  });

  it('has one config value per PNC_* setting, written into that variable and named in the Configure table', () => {
    const config = values.config as Record<string, unknown>;
    expect(Object.keys(config).sort()).toEqual(settings.map((s) => chartName(s.env)).sort());
    for (const { env } of settings) {
      expect(configMapTemplate, env).toMatch(new RegExp(`^  ${env}: \\{\\{ [^}]*\\$c\\.${chartName(env)}\\b`, 'm'));
    }
    const envs = tableColumn('| env | flag | chart value |', 0);
    const chartValues = tableColumn('| env | flag | chart value |', 2);
    for (const { env } of settings) expect(chartValues[envs.indexOf(env)], env).toBe(`config.${chartName(env)}`);
  });
});
