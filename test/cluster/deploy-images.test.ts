// The container images as the Dockerfile describes them: every file it copies exists
// after the build and survives .dockerignore, the bundles need nothing from node_modules,
// and each image holds only its own bundle. (The images themselves are built and run on the
// real node by the node suite, through hack/local-cluster.sh deploy.) And the local deploy's
// kustomization: the shipped manifests with nothing changed but the images.
import { execFile } from 'node:child_process';
import { copyFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBundles } from '../../hack/lib/ensure-bundles.ts';
import { kustomize, type Manifest } from './deploy-support.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const ENTRY_POINTS = { controller: 'controller/src/cli.ts', 'init-waiter': 'init-waiter/src/main.ts' } as const;

interface Stage {
  name: string;
  workdir: string;
  copies: { from?: string; sources: string[]; destination: string }[];
}

/** The Dockerfile's stages and COPY instructions (continuation lines joined, comments dropped). */
function parseDockerfile(text: string): Stage[] {
  const lines = text
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ')
    .split('\n');
  const stages: Stage[] = [];
  for (const line of lines) {
    const words = line.trim().split(/\s+/);
    const instruction = words[0]?.toUpperCase();
    if (instruction === 'FROM') {
      const as = words.findIndex((w) => w.toUpperCase() === 'AS');
      stages.push({ name: as === -1 ? String(stages.length) : words[as + 1]!, workdir: '/', copies: [] });
    } else if (instruction === 'WORKDIR') {
      stages.at(-1)!.workdir = words[1]!;
    } else if (instruction === 'COPY') {
      const flags = words.slice(1).filter((w) => w.startsWith('--'));
      const paths = words.slice(1).filter((w) => !w.startsWith('--'));
      const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
      stages.at(-1)!.copies.push({ from, sources: paths.slice(0, -1), destination: paths.at(-1)! });
    }
  }
  return stages;
}

/** Whether .dockerignore lets PATH into the build context (last matching rule wins). */
function inContext(dockerignore: string, path: string): boolean {
  let included = true;
  for (const raw of dockerignore.split('\n')) {
    const rule = raw.trim();
    if (rule === '' || rule.startsWith('#')) continue;
    const negated = rule.startsWith('!');
    const pattern = (negated ? rule.slice(1) : rule).replace(/\/$/, '');
    const regex = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`);
    if (regex.test(path)) included = negated;
  }
  return included;
}

describe('Dockerfile and .dockerignore', () => {
  let stages: Stage[];
  let dockerignore: string;
  const scratch: string[] = [];

  beforeAll(async () => {
    ensureBundles();
    stages = parseDockerfile(await readFile(join(ROOT, 'Dockerfile'), 'utf8'));
    dockerignore = await readFile(join(ROOT, '.dockerignore'), 'utf8');
  });
  afterAll(async () => {
    for (const dir of scratch) await rm(dir, { recursive: true, force: true });
  });

  it('has a build stage and the two runtime targets', () => {
    expect(stages.map((s) => s.name)).toEqual(['build', 'controller', 'init-waiter']);
  });

  it('copies from the build context only files that exist and that .dockerignore keeps', async () => {
    const fromContext = stages.flatMap((s) => s.copies.filter((c) => c.from === undefined).flatMap((c) => c.sources));
    expect(fromContext.length).toBeGreaterThan(0);
    for (const source of fromContext) {
      await expect(stat(join(ROOT, source)), source).resolves.toBeTruthy();
      expect(inContext(dockerignore, source), `${source} is excluded by .dockerignore`).toBe(true);
    }
  });

  it('gives the build stage every source file the bundles and the build script are made of', async () => {
    const copied = stages.find((s) => s.name === 'build')!.copies.flatMap((c) => c.sources);
    const result = await build({
      entryPoints: [...Object.values(ENTRY_POINTS), 'hack/build.ts'].map((entry) => join(ROOT, entry)),
      // The build script's own npm imports (esbuild) come from npm ci, not from the context.
      external: ['esbuild'],
      bundle: true,
      platform: 'node',
      format: 'esm',
      write: false,
      metafile: true,
      outdir: join(ROOT, 'dist'),
      logLevel: 'silent',
    });
    const ownSources = Object.keys(result.metafile.inputs)
      .map((input) => relative(ROOT, resolve(ROOT, input)))
      .filter((input) => !input.startsWith('node_modules/'));
    expect(ownSources).toContain('controller/src/pod-contract/mark.ts');
    expect(ownSources).toContain('hack/lib/bundle-options.ts');
    for (const source of ownSources) {
      expect(
        copied.some((c) => source === c || source.startsWith(`${c}/`)),
        `${source} is not copied into the build stage`,
      ).toBe(true);
      expect(inContext(dockerignore, source), `${source} is excluded by .dockerignore`).toBe(true);
    }
  });

  it('puts only its own bundle (and dist/package.json) into each runtime image', async () => {
    const build = stages.find((s) => s.name === 'build')!;
    for (const target of ['controller', 'init-waiter'] as const) {
      const copies = stages.find((s) => s.name === target)!.copies;
      expect(
        copies.every((c) => c.from === 'build'),
        `${target} copies only from the build stage`,
      ).toBe(true);
      const files = copies.flatMap((c) => c.sources).map((source) => relative(build.workdir, source));
      expect(files.sort()).toEqual([`dist/${target}.js`, 'dist/package.json']);
      for (const file of files) await expect(stat(join(ROOT, file)), `${file} after node hack/build.ts`).resolves.toBeTruthy();
    }
  });

  it.each(Object.keys(ENTRY_POINTS) as (keyof typeof ENTRY_POINTS)[])('runs the %s bundle with no node_modules anywhere above it', async (target) => {
    const dir = await mkdtemp(join(tmpdir(), `pnc-image-${target}-`));
    scratch.push(dir);
    await copyFile(join(ROOT, `dist/${target}.js`), join(dir, `${target}.js`));
    await copyFile(join(ROOT, 'dist/package.json'), join(dir, 'package.json'));
    for (let parent = dir; ; parent = dirname(parent)) {
      await expect(stat(join(parent, 'node_modules')), `node_modules in ${parent}`).rejects.toThrow();
      if (parent === dirname(parent)) break;
    }
    const { stdout, stderr } = await run(process.execPath, [join(dir, `${target}.js`), '--help'], { cwd: dir, timeout: 15_000 });
    expect(`${stdout}${stderr}`).toMatch(target === 'controller' ? /Usage: node dist\/controller\.js/ : /--annotations-file/);
  });
});

describe('hack/deploy-local.sh kustomization', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pnc-deploy-local-'));
    await run('bash', [join(ROOT, 'hack/deploy-local.sh'), 'kustomization', dir]);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const key = (o: Manifest) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;

  it('renders the kubernetes overlay and the admission-policy injection with only the images changed', async () => {
    const local = await kustomize(dir);
    const shipped = [...(await kustomize('manifests/overlays/kubernetes')), ...(await kustomize('manifests/injection/admission-policy'))];
    const expected = structuredClone(shipped).map((object) => {
      if (object.kind === 'DaemonSet') {
        const spec = object.spec as { template: { spec: { containers: { image: string }[] } } };
        expect(spec.template.spec.containers[0]!.image).toBe('ghcr.io/pod-network-controller/controller:0.2.0');
        spec.template.spec.containers[0]!.image = 'localhost/pod-network-controller/controller:dev';
      }
      if (object.kind === 'ConfigMap' && object.metadata.name === 'pod-network-controller-injection') {
        const data = (object as Manifest & { data: Record<string, string> }).data;
        expect(data.image).toBe('ghcr.io/pod-network-controller/init-waiter:0.2.0');
        data.image = 'localhost/pod-network-controller/init-waiter:dev';
      }
      return object;
    });
    expect(local.map(key).sort()).toEqual(expected.map(key).sort());
    const byKey = new Map(local.map((object) => [key(object), object]));
    for (const object of expected) expect(byKey.get(key(object)), key(object)).toEqual(object);
  });
});
