// Shared by the deploy-*.test.ts files: the manifests as kustomize renders them, the
// built kubectl (same release as the test API server), and installing objects with
// server-side apply. Cluster-scoped admission policies are installed under per-run
// names and bound only to this run's namespaces, so the other tests sharing the
// cluster are never subject to them.
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { ApiException, CoreV1Api, KubernetesObjectApi, PatchStrategy, type KubeConfig, type KubernetesObject, type V1Pod } from '@kubernetes/client-node';
import { inject } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { pollUntil } from '../../hack/lib/poll.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const CONTROLLER_NAMESPACE = 'pod-network-controller';
export const CONTROLLER_SERVICE_ACCOUNT = 'pod-network-controller';
export const MARK = 'pod-network-controller.io/status';
const FIELD_MANAGER = 'pnc-deploy-test';

export interface Manifest extends KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  // Manifests are checked field by field in the tests; their shape varies by kind.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [field: string]: any;
}

/** The kubectl built with the control plane (v1.34, same release as the apiserver). */
export function kubectlBinary(): string {
  return `${inject('binDir')}/kubectl`;
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the built kubectl against the test cluster; never throws on a non-zero exit. */
export async function kubectl(args: string[], input?: string): Promise<CommandResult> {
  const binary = kubectlBinary();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(binary, args, { cwd: ROOT, env: { ...process.env, KUBECONFIG: inject('kubeconfig') } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

/** The objects `kubectl apply -k DIR` would send (DIR relative to the repository root). */
export async function kustomize(dir: string): Promise<Manifest[]> {
  const result = await kubectl(['kustomize', dir]);
  if (result.code !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${result.stderr}`);
  return parseAllDocuments(result.stdout).map((doc) => doc.toJS() as Manifest);
}

export function findManifest(objects: Manifest[], kind: string, name?: string): Manifest {
  const found = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (!found) throw new Error(`no ${kind}${name ? ` ${name}` : ''} among ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')}`);
  return found;
}

/** Installs objects with server-side apply; returns a function that deletes them again. */
export async function install(kc: KubeConfig, objects: Manifest[]): Promise<() => Promise<void>> {
  const client = KubernetesObjectApi.makeApiClient(kc);
  const applied: Manifest[] = [];
  const uninstall = async () => {
    for (const object of applied.reverse()) {
      await client.delete(object).catch((error: unknown) => {
        if (!(error instanceof ApiException && error.code === 404)) throw error;
      });
    }
  };
  try {
    for (const object of objects) {
      await client.patch(object, undefined, undefined, FIELD_MANAGER, true, PatchStrategy.ServerSideApply);
      applied.push(object);
    }
  } catch (error) {
    await uninstall();
    throw error;
  }
  return uninstall;
}

/**
 * The admission policies among OBJECTS, renamed for this run and bound only to
 * namespaces labelled SCOPE_LABEL=RUN. The policies' rules are untouched.
 */
export function scopedToRun(objects: Manifest[], run: string): Manifest[] {
  const policyKinds = ['ValidatingAdmissionPolicy', 'MutatingAdmissionPolicy'];
  const bindingKinds = ['ValidatingAdmissionPolicyBinding', 'MutatingAdmissionPolicyBinding'];
  return objects
    .filter((o) => policyKinds.includes(o.kind) || bindingKinds.includes(o.kind))
    .map((o) => {
      const copy = structuredClone(o);
      copy.metadata.name = `${o.metadata.name}-${run}`;
      if (bindingKinds.includes(o.kind)) {
        copy.spec.policyName = `${o.spec.policyName}-${run}`;
        const selector = copy.spec.matchResources?.namespaceSelector ?? {};
        copy.spec.matchResources = {
          ...copy.spec.matchResources,
          namespaceSelector: { ...selector, matchLabels: { ...selector.matchLabels, [SCOPE_LABEL]: run } },
        };
      }
      return copy;
    });
}
export const SCOPE_LABEL = 'pnc-deploy-test.io/run';

/**
 * The controller's namespace exists for the whole cluster lifetime: the policies name
 * its ServiceAccount. Created when missing and never deleted (other runs may use it).
 */
export async function ensureControllerNamespace(kc: KubeConfig): Promise<void> {
  const core = kc.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: CONTROLLER_NAMESPACE } } }).catch((error: unknown) => {
    if (!(error instanceof ApiException && error.code === 409)) throw error;
  });
}

export interface ApiFailure {
  code: number;
  message: string;
}

/** The HTTP status and the API server's message of a failed request (throws if it succeeded). */
export async function apiFailure(request: Promise<unknown>): Promise<ApiFailure> {
  try {
    await request;
  } catch (error) {
    if (!(error instanceof ApiException)) throw error;
    const body: unknown = typeof error.body === 'string' ? JSON.parse(error.body) : error.body;
    return { code: error.code, message: String((body as { message?: string })?.message ?? error.message) };
  }
  throw new Error('expected the API server to refuse the request, but it succeeded');
}

/** A pod that only exists as an API object (no kubelet runs it). */
export function apiOnlyPod(name: string, spec: Partial<V1Pod['spec']> = {}, metadata: V1Pod['metadata'] = {}): V1Pod {
  return {
    metadata: { name, ...metadata },
    spec: {
      automountServiceAccountToken: false,
      containers: [{ name: 'app', image: 'example.invalid/app:1' }],
      ...spec,
    },
  };
}

/** Polls CHECK until it returns true (policies take effect a moment after they are created). */
export async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  await pollUntil(check, timeoutMs, () => `timed out after ${timeoutMs} ms waiting for ${what}`, 250);
}
