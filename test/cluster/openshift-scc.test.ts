// What we ship, under OpenShift's own SecurityContextConstraints admission: a private control
// plane started with `hack/local-cluster.sh up --openshift` (the real SCC CRD, OpenShift's
// default SCCs and RBAC, the plugin served as webhooks, namespaces given their UID ranges), in
// a state dir of this file's own, stopped at the end. Pods are created as OpenShift's users
// and controllers would create them: a plain user, the DaemonSet controller's identity, a
// cluster admin. Which SCC each got is printed at the end (docs/operating.md's table).
import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CoreV1Api, KubeConfig, type V1Container, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { namespaceProxyIds, UID_RANGE_ANNOTATION } from '../../controller/src/agent/proxy-identity.ts';
import { ensureLocalCluster, stopLocalCluster, type LocalCluster } from '../../hack/lib/local-cluster.ts';
import { netAdminPod, OPENSHIFT_SCC_ANNOTATION, openShiftMeshPod, PROXY_CONTAINER, WAITER_CONTAINER } from '../../hack/lib/mesh-pods.ts';
import { pollFor } from '../../hack/lib/poll.ts';
import { processStartTime } from '../../hack/lib/proc.ts';
import { waitForInjected } from '../../hack/lib/real-node.ts';
import { sweepClustersOfDeadRuns } from '../support/cluster-global-setup.ts';
import { freshNamespace } from '../support/cluster.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const PREFIX = 'pnc-test-openshift-';
const OVERLAY = 'manifests/overlays/openshift';
const AGENT_NAMESPACE = 'pod-network-controller';
/** The identity the DaemonSet controller creates pods with on OpenShift (its own ServiceAccount). */
const DAEMONSET_CONTROLLER = [
  '--as=system:serviceaccount:kube-system:daemon-set-controller',
  '--as-group=system:serviceaccounts',
  '--as-group=system:serviceaccounts:kube-system',
  '--as-group=system:authenticated',
];
/** A plain user: not an admin, not system:masters. */
const PLAIN_USER = ['--as=someone', '--as-group=system:authenticated'];
/** OpenShift's SCCs as hack/openshift/scc-manifests installs them. */
const OPENSHIFT_SCCS = [
  'anyuid',
  'hostaccess',
  'hostmount-anyuid',
  'hostmount-anyuid-v2',
  'hostnetwork',
  'hostnetwork-v2',
  'nested-container',
  'nonroot',
  'nonroot-v2',
  'privileged',
  'restricted',
  'restricted-v2',
  'restricted-v3',
];

let stateDir: string | undefined;
let cluster: LocalCluster;
let kc: KubeConfig;
let core: CoreV1Api;
/** `kubectl apply -k` of the overlay, client-side, as a user following docs/operating.md might run it. */
let plainApply: CommandResult;
/** Which SCC each kind of pod got: printed at the end. */
const observed: [string, string][] = [];

interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function kubectl(args: string[], input?: string): Promise<CommandResult> {
  return new Promise((done, fail) => {
    const child = spawn(join(cluster.binDir, 'kubectl'), args, { cwd: ROOT, env: { ...process.env, KUBECONFIG: cluster.kubeconfig } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', fail);
    child.on('close', (code) => done({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

/** Creates POD in NAMESPACE as the identity AS (kubectl --as flags); the admitted pod, or the refusal. */
async function createAs(as: string[], namespace: string, pod: V1Pod, dryRun = false): Promise<{ pod?: V1Pod; result: CommandResult }> {
  const args = ['create', '-n', namespace, '-f', '-', '-o', 'json', ...as, ...(dryRun ? ['--dry-run=server'] : [])];
  const result = await kubectl(args, JSON.stringify(pod));
  return { pod: result.code === 0 ? (JSON.parse(result.stdout) as V1Pod) : undefined, result };
}

function admitted(created: { pod?: V1Pod; result: CommandResult }, what: string): V1Pod {
  if (!created.pod) throw new Error(`${what} was refused: ${created.result.stderr}`);
  return created.pod;
}

/** The UID a container runs as: its own runAsUser, else the pod's. */
function uidOf(pod: V1Pod, container: V1Container | undefined): number | undefined {
  return container?.securityContext?.runAsUser ?? pod.spec?.securityContext?.runAsUser;
}

function container(pod: V1Pod, name: string): V1Container | undefined {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === name);
}

/** A namespace of this cluster, once OpenShift's annotations are on it; returns its name and UID range. */
async function openShiftNamespace(labels: Record<string, string> = {}): Promise<{ name: string; first: number; top: number }> {
  const name = await freshNamespace(kc, labels);
  const annotations = await pollFor(
    `${UID_RANGE_ANNOTATION} on namespace ${name}`,
    async () => {
      const ns = await core.readNamespace({ name });
      return ns.metadata?.annotations?.[UID_RANGE_ANNOTATION] ? ns.metadata.annotations : undefined;
    },
    15_000,
  );
  const top = namespaceProxyIds(annotations).uid?.value;
  if (top === undefined) throw new Error(`namespace ${name} has an unreadable ${UID_RANGE_ANNOTATION}: ${annotations[UID_RANGE_ANNOTATION]}`);
  return { name, first: Number(annotations[UID_RANGE_ANNOTATION]!.split('/')[0]), top };
}

/** Lets the plain user create and remove pods in NAMESPACE (OpenShift's `edit` would; its aggregation needs a controller we do not run). */
async function letPlainUserCreatePods(namespace: string): Promise<void> {
  const role = ['create', 'role', 'pod-author', '-n', namespace, '--verb=create,get,list,delete', '--resource=pods'];
  const binding = ['create', 'rolebinding', 'pod-author', '-n', namespace, '--role=pod-author', '--user=someone'];
  for (const args of [role, binding]) expect((await kubectl(args)).stderr).toBe('');
}

beforeAll(async () => {
  await sweepClustersOfDeadRuns(PREFIX);
  stateDir = join(tmpdir(), `${PREFIX}${process.pid}-${await processStartTime(process.pid)}`);
  // A cold build of scc-admission takes minutes (.ci/run builds it before the tests).
  cluster = await ensureLocalCluster({ stateDir, withControllerManager: true, openshift: true });
  kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  core = kc.makeApiClient(CoreV1Api);
  plainApply = await kubectl(['apply', '-k', OVERLAY]);
  const injection = await kubectl(['apply', '--server-side', '--field-manager=pnc-openshift-test', '-k', 'manifests/injection/admission-policy']);
  expect(injection.stderr).toBe('');
}, 30 * 60_000);

afterAll(async () => {
  if (!stateDir) return;
  console.log(`SCC each kind of pod got:\n${observed.map(([kind, scc]) => `  ${kind}: ${scc}`).join('\n')}`);
  // The webhook logs each review's duration: the admission cost OpenShift's plugin adds here.
  const log = await readFile(join(stateDir, 'logs', 'scc-admission.log'), 'utf8').catch(() => '');
  const durations = [...log.matchAll(/^.* (\/mutate|\/validate) CREATE .* in ([\d.]+)(ms|s)$/gm)].map((m) => Number(m[2]) * (m[3] === 's' ? 1000 : 1));
  if (durations.length > 0) {
    durations.sort((a, b) => a - b);
    console.log(`scc-admission: ${durations.length} reviews, median ${durations[durations.length >> 1]} ms, max ${durations.at(-1)} ms`);
  }
  await stopLocalCluster({ stateDir });
  await rm(`${stateDir}.lock`, { force: true });
}, 120_000);

describe('OpenShift SCC admission (local-cluster.sh up --openshift)', () => {
  it('has the real SCC CRD and every default SCC of OpenShift, and our overlay adds none', async () => {
    const sccs = await kubectl(['get', 'securitycontextconstraints', '-o', 'jsonpath={.items[*].metadata.name}']);
    expect(sccs.stderr).toBe('');
    expect(sccs.stdout.split(' ').sort()).toEqual(OPENSHIFT_SCCS);
  });

  it('our overlay applies with plain `kubectl apply -k` and with --server-side against the real SCC CRD', async () => {
    // The SCC we used to ship failed here with "priority: Required value" (client-side apply drops `priority: null`).
    expect(plainApply.stderr).toBe('');
    expect(plainApply.code).toBe(0);
    // Over the plain apply: the only conflicts are with its field manager, which is not what this checks.
    const serverSide = await kubectl(['apply', '-k', OVERLAY, '--server-side', '--force-conflicts', '--dry-run=server', '--field-manager=pnc-openshift-test']);
    expect(serverSide.stderr).toBe('');
    expect(serverSide.code).toBe(0);
  });

  it("admits a plain user's mesh pod, injected by our admission policy, under restricted-v2 with UIDs from the namespace's range", async () => {
    const ns = await openShiftNamespace({ 'pod-network-controller.io/inject': 'enabled' });
    await letPlainUserCreatePods(ns.name);
    const probe = openShiftMeshPod('injection-probe', { proxyUid: ns.top });
    await waitForInjected(core, ns.name, probe, WAITER_CONTAINER, 'the injection policy');
    const created = await createAs(PLAIN_USER, ns.name, openShiftMeshPod('mesh', { proxyUid: ns.top }));
    const pod = admitted(created, 'the mesh pod');
    expect(pod.metadata?.annotations?.[OPENSHIFT_SCC_ANNOTATION]).toBe('restricted-v2');
    // Through the user (system:authenticated may use restricted-v2), not the pod's ServiceAccount.
    expect(pod.metadata?.annotations?.['security.openshift.io/validated-scc-subject-type']).toBe('user');
    // The plugin's reasoning comes back as warnings.
    expect(created.result.stderr).toContain('securitycontextconstraints.admission.openshift.io/chosen: restricted-v2');
    expect(uidOf(pod, container(pod, PROXY_CONTAINER))).toBe(ns.top);
    expect(uidOf(pod, container(pod, WAITER_CONTAINER))).toBe(ns.first);
    expect(uidOf(pod, container(pod, 'app'))).toBe(ns.first);
    observed.push(['mesh pod (admission-policy injection, proxy at the range top), plain user', pod.metadata!.annotations![OPENSHIFT_SCC_ANNOTATION]!]);
  });

  it('refuses a proxy pinned to 1337 under restricted-v2, and admits it under nonroot-v2 once the ServiceAccount may use it', async () => {
    const ns = await openShiftNamespace({ 'pod-network-controller.io/inject': 'enabled' });
    await letPlainUserCreatePods(ns.name);
    await core.createNamespacedServiceAccount({ namespace: ns.name, body: { metadata: { name: 'mesh-app' } } });
    const pinned = openShiftMeshPod('pinned', { proxyUid: 1337, serviceAccountName: 'mesh-app' });
    const refused = await createAs(PLAIN_USER, ns.name, pinned);
    expect(refused.result.code).not.toBe(0);
    expect(refused.result.stderr).toContain('unable to validate against any security context constraint');
    expect(refused.result.stderr).toContain(
      `provider restricted-v2: .containers[1].runAsUser: Invalid value: 1337: must be in the ranges: [${ns.first}, ${ns.top}]`,
    );
    observed.push(['mesh pod with the proxy pinned to 1337, plain user', 'refused']);

    const grant = [
      'create',
      'rolebinding',
      'mesh-app-nonroot-v2',
      '-n',
      ns.name,
      '--clusterrole=system:openshift:scc:nonroot-v2',
      `--serviceaccount=${ns.name}:mesh-app`,
    ];
    expect((await kubectl(grant)).stderr).toBe('');
    // scc-admission reuses RBAC answers for a few seconds.
    const pod = await pollFor('the pinned proxy to be admitted', async () => (await createAs(PLAIN_USER, ns.name, pinned)).pod, 20_000, 1000);
    expect(pod.metadata?.annotations?.[OPENSHIFT_SCC_ANNOTATION]).toBe('nonroot-v2');
    expect(pod.metadata?.annotations?.['security.openshift.io/validated-scc-subject-type']).toBe('serviceaccount');
    expect(uidOf(pod, container(pod, PROXY_CONTAINER))).toBe(1337);
    observed.push(['the same, its ServiceAccount granted nonroot-v2', pod.metadata!.annotations![OPENSHIFT_SCC_ANNOTATION]!]);
  });

  it("admits the agent's DaemonSet pod, created as the DaemonSet controller, under privileged only through the RoleBinding we ship", async () => {
    const daemonSet = JSON.parse((await kubectl(['get', 'daemonset', 'pod-network-controller', '-n', AGENT_NAMESPACE, '-o', 'json'])).stdout);
    // What the DaemonSet controller sends for a node: the template, under a generated name.
    const agentPod: V1Pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'pod-network-controller-', labels: daemonSet.spec.template.metadata.labels },
      spec: daemonSet.spec.template.spec,
    };
    const pod = admitted(await createAs(DAEMONSET_CONTROLLER, AGENT_NAMESPACE, agentPod, true), "the agent's pod");
    expect(pod.metadata?.annotations?.[OPENSHIFT_SCC_ANNOTATION]).toBe('privileged');
    expect(pod.metadata?.annotations?.['security.openshift.io/validated-scc-subject-type']).toBe('serviceaccount');
    observed.push(["the agent's DaemonSet pod, DaemonSet controller", 'privileged']);

    const binding = await kubectl(['get', 'rolebinding', 'pod-network-controller-scc', '-n', AGENT_NAMESPACE, '-o', 'json']);
    expect((await kubectl(['delete', 'rolebinding', 'pod-network-controller-scc', '-n', AGENT_NAMESPACE])).code).toBe(0);
    try {
      const refusal = await pollFor(
        "the agent's pod to be refused without the RoleBinding",
        async () => {
          const attempt = await createAs(DAEMONSET_CONTROLLER, AGENT_NAMESPACE, agentPod, true);
          return attempt.pod ? undefined : attempt.result.stderr;
        },
        20_000,
        1000,
      );
      expect(refusal).toContain('unable to validate against any security context constraint');
      expect(refusal).toContain('provider "privileged": Forbidden: not usable by user or serviceaccount');
      observed.push(["the agent's DaemonSet pod, without our RoleBinding", 'refused']);
    } finally {
      const restored = JSON.parse(binding.stdout);
      delete restored.metadata.resourceVersion;
      delete restored.metadata.uid;
      expect((await kubectl(['create', '-f', '-'], JSON.stringify(restored))).stderr).toBe('');
    }
  });

  it("gives a cluster admin's NET_ADMIN pod in an application namespace one of OpenShift's SCCs, never one of ours", async () => {
    const ns = await openShiftNamespace();
    const pod = admitted(await createAs([], ns.name, netAdminPod('net-admin')), 'the NET_ADMIN pod');
    const scc = pod.metadata?.annotations?.[OPENSHIFT_SCC_ANNOTATION];
    expect(OPENSHIFT_SCCS).toContain(scc);
    expect(scc).toBe('privileged');
    observed.push(["a cluster admin's NET_ADMIN pod in an application namespace", scc!]);
  });
});
