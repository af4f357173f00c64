// Istio's own sidecar injector for the tests and bench:node (hack/istio/cmd/istio-injector, built from the
// Go module proxy by hack/build-istio-binaries.sh): the istiod chart rendered the way an
// install route does, and pkg/kube/inject's webhook served with that configuration and
// registered on the test API server through the chart's own MutatingWebhookConfiguration.
import { execFile, spawn } from 'node:child_process';
import type { ChildProcessByStdio } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { promisify } from 'node:util';
import { AdmissionregistrationV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1MutatingWebhookConfiguration, V1Pod } from '@kubernetes/client-node';
import { parseAllDocuments, stringify } from 'yaml';

const ROOT = resolve(import.meta.dirname, '../..');
const execFileAsync = promisify(execFile);

export type InstallRoute = 'helm' | 'istioctl';

export interface RenderedIstiod {
  dir: string;
  // Rendered objects are read field by field; their shape varies by kind.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  objects: any[];
  /** The injector's values (ConfigMap istio-sidecar-injector, key values). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  values: any;
  /** istiod's environment as the rendered Deployment sets it (literal values only). */
  env: Record<string, string>;
  remove(): Promise<void>;
}

export interface Injector {
  url: string;
  caBundle: string;
  stderr(): string;
  stop(): Promise<void>;
}

/**
 * The directory holding the named binaries of hack/istio (default istio-injector), built from
 * the Go module proxy by hack/build-istio-binaries.sh when the cache lacks them (cold: minutes; CI builds them first).
 */
export async function istioBinDir(...names: string[]): Promise<string> {
  const args = [join(ROOT, 'hack/build-istio-binaries.sh'), ...(names.length ? names : ['istio-injector'])];
  try {
    const { stdout } = await execFileAsync('bash', args, { cwd: ROOT, timeout: 20 * 60_000, maxBuffer: 16 << 20 });
    return stdout.trim().split('\n').at(-1)!;
  } catch (error) {
    throw new Error(`hack/build-istio-binaries.sh ${args.slice(1).join(' ')} failed: ${(error as { stderr?: string }).stderr?.trim() || String(error)}`, {
      cause: error,
    });
  }
}

/** Renders the istiod chart from FILES (paths relative to the repository root, or absolute) and SETS. */
export async function renderIstiod(binDir: string, route: InstallRoute, files: string[], sets: string[] = []): Promise<RenderedIstiod> {
  const dir = await mkdtemp(join(tmpdir(), `pnc-istiod-${route}-`));
  const args = ['render', '--route', route, '--out', dir];
  for (const file of files) args.push('--file', resolve(ROOT, file));
  for (const set of sets) args.push('--set', set);
  try {
    await execFileAsync(join(binDir, 'istio-injector'), args, { maxBuffer: 1 << 20 });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`istio-injector ${args.join(' ')}: ${(error as { stderr?: string }).stderr ?? String(error)}`);
  }
  const objects = JSON.parse(await readFile(join(dir, 'objects.json'), 'utf8')) as RenderedIstiod['objects'];
  const values: unknown = JSON.parse(await readFile(join(dir, 'values'), 'utf8'));
  const istiod = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'istiod');
  if (!istiod) throw new Error(`no istiod Deployment rendered (route ${route})`);
  const discovery = istiod.spec.template.spec.containers.find((c: { name: string }) => c.name === 'discovery');
  const env: Record<string, string> = {};
  // KUBECONFIG names a remote-cluster secret inside istiod's pod; the injector gets --kubeconfig instead.
  for (const e of discovery.env as { name: string; value?: string }[]) if (e.value !== undefined && e.name !== 'KUBECONFIG') env[e.name] = e.value;
  return { dir, objects, values, env, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Starts the injector on RENDERED's configuration with istiod's environment; resolves once it serves. */
export async function startInjector(binDir: string, rendered: RenderedIstiod, kubeconfig: string): Promise<Injector> {
  const child: ChildProcessByStdio<Writable, Readable, Readable> = spawn(
    join(binDir, 'istio-injector'),
    ['serve', '--dir', rendered.dir, '--kubeconfig', kubeconfig],
    { env: rendered.env, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  // Closing stdin stops it, so it dies with this process even without stop().
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-20_000)));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const stop = async () => {
    child.stdin.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const line = await new Promise<string>((done, fail) => {
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('\n')) done(out.split('\n')[0]!);
      });
      child.once('exit', (code) => fail(new Error(`istio-injector serve exited ${code}: ${stderr.slice(-2000)}`)));
      setTimeout(() => fail(new Error(`istio-injector serve not ready within 60 s: ${stderr.slice(-2000)}`)), 60_000);
    });
    const { url, caBundle } = JSON.parse(line) as { url: string; caBundle: string };
    return { url, caBundle, stderr: () => stderr, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * Registers the chart's MutatingWebhookConfiguration, pointed at INJECTOR, under a name of
 * its own and narrowed to namespaces labelled SCOPE_KEY=SCOPE (so other tests and other
 * injectors never meet it); returns a function that removes it.
 */
export async function registerInjector(
  kc: KubeConfig,
  rendered: RenderedIstiod,
  injector: Injector,
  scopeKey: string,
  scope: string,
): Promise<() => Promise<void>> {
  const chart = rendered.objects.find((o) => o.kind === 'MutatingWebhookConfiguration') as V1MutatingWebhookConfiguration | undefined;
  if (!chart) throw new Error('the rendered chart has no MutatingWebhookConfiguration');
  const name = `istio-sidecar-injector-${scope}`;
  const body: V1MutatingWebhookConfiguration = {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name, labels: chart.metadata?.labels },
    webhooks: (chart.webhooks ?? []).map((webhook) => ({
      ...webhook,
      clientConfig: { url: injector.url, caBundle: injector.caBundle },
      namespaceSelector: {
        ...webhook.namespaceSelector,
        matchExpressions: [...(webhook.namespaceSelector?.matchExpressions ?? []), { key: scopeKey, operator: 'In', values: [scope] }],
      },
    })),
  };
  const api = kc.makeApiClient(AdmissionregistrationV1Api);
  await api.createMutatingWebhookConfiguration({ body });
  return async () => {
    await api.deleteMutatingWebhookConfiguration({ name }).catch((error: unknown) => {
      if ((error as { code?: number }).code !== 404) throw error;
    });
  };
}

/**
 * `istioctl kube-inject` as its help shows it. Offline (no KUBECONFIG): the injector's config,
 * values and mesh config from RENDERED's ConfigMaps. With KUBECONFIG: only the mesh config, and
 * istioctl sends the pod to the cluster's injection webhook. --revision default either way, so
 * it asks no cluster for revision tags.
 */
export async function kubeInject(binDir: string, rendered: RenderedIstiod, pod: V1Pod, kubeconfig?: string): Promise<V1Pod> {
  const input = join(rendered.dir, `kube-inject-${pod.metadata?.name ?? 'pod'}.yaml`);
  await writeFile(input, stringify({ apiVersion: 'v1', kind: 'Pod', ...pod }));
  const args = ['kube-inject', '--revision', 'default', '--meshConfigFile', join(rendered.dir, 'mesh'), '-f', input];
  if (!kubeconfig) args.push('--injectConfigFile', join(rendered.dir, 'config'), '--valuesFile', join(rendered.dir, 'values'));
  const env: Record<string, string> = kubeconfig ? { KUBECONFIG: kubeconfig } : {};
  const { stdout } = await execFileAsync(join(binDir, 'istio-injector'), args, { env, maxBuffer: 4 << 20 });
  const injected = parseAllDocuments(stdout)
    .map((doc) => doc.toJS() as V1Pod | null)
    .find((doc) => doc?.kind === 'Pod');
  if (!injected) throw new Error(`istioctl kube-inject printed no Pod: ${stdout.slice(0, 500)}`);
  return injected;
}
