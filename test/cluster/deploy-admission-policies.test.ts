// The two ValidatingAdmissionPolicies of manifests/base against the real API server,
// with real ServiceAccount tokens: mark integrity (nobody but the controller writes the
// mark) and node scoping (the controller writes only the mark, only on its own node).
import { randomBytes } from 'node:crypto';
import { AuthenticationV1Api, CoreV1Api, PatchStrategy, RbacAuthorizationV1Api, setHeaderOptions, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubeApiError, KubeClient } from '../../controller/src/kube/kube-client.ts';
import { PodStatusWriter } from '../../controller/src/kube/pod-status-writer.ts';
import { parseMark } from '../../controller/src/pod-contract/index.ts';
import { adminKubeConfig, freshNamespace } from '../support/cluster.ts';
import { createServiceAccountToken, ensureNode, kubeConfigForToken } from '../../hack/lib/kube-objects.ts';
import {
  CONTROLLER_NAMESPACE,
  CONTROLLER_SERVICE_ACCOUNT,
  MARK,
  SCOPE_LABEL,
  apiFailure,
  apiOnlyPod,
  ensureControllerNamespace,
  eventually,
  install,
  kustomize,
  scopedToRun,
  type Manifest,
} from './deploy-support.ts';

const run = randomBytes(3).toString('hex');
const nodeA = `pnc-deploy-${run}-a`;
const nodeB = `pnc-deploy-${run}-b`;
const MARK_VALUE = JSON.stringify({ state: 'initialized', at: '2026-11-23T00:00:00Z', netns: 4026532845, rules: '0123456789abcdef' });

const admin = adminKubeConfig();
const core = admin.makeApiClient(CoreV1Api);
const cleanups: (() => Promise<unknown>)[] = [];
let namespace: string;
let controllerConfig: KubeConfig;
let controller: CoreV1Api;

const markPatch = (value: string | null, extra: Record<string, unknown> = {}) => ({
  ...extra,
  metadata: {
    ...(extra.metadata as object | undefined),
    annotations: { [MARK]: value, ...(extra.metadata as { annotations?: object } | undefined)?.annotations },
  },
});

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** A JSON merge patch on pods/status, as the controller writes the mark. */
function patchStatus(api: CoreV1Api, name: string, body: object): Promise<V1Pod> {
  return api.patchNamespacedPodStatus({ name, namespace, body, fieldManager: 'pod-network-controller' }, mergePatch);
}
function patchPod(api: CoreV1Api, name: string, body: object): Promise<V1Pod> {
  return api.patchNamespacedPod({ name, namespace, body }, mergePatch);
}
async function createPod(pod: V1Pod): Promise<V1Pod> {
  return core.createNamespacedPod({ namespace, body: pod });
}

async function annotationsOf(name: string): Promise<Record<string, string>> {
  return (await core.readNamespacedPod({ name, namespace })).metadata?.annotations ?? {};
}

/** The controller's own pod on NODE and a token bound to it, as the DaemonSet's projected token is. */
async function controllerClientOn(node: string): Promise<KubeConfig> {
  const agent = await core.createNamespacedPod({
    namespace: CONTROLLER_NAMESPACE,
    body: apiOnlyPod(`pnc-agent-${node}-${randomBytes(3).toString('hex')}`, { nodeName: node, serviceAccountName: CONTROLLER_SERVICE_ACCOUNT }),
  });
  cleanups.push(() => core.deleteNamespacedPod({ name: agent.metadata!.name!, namespace: CONTROLLER_NAMESPACE, gracePeriodSeconds: 0 }));
  const token = await createServiceAccountToken(admin, CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT, {
    boundPod: { name: agent.metadata!.name!, uid: agent.metadata!.uid! },
  });
  return kubeConfigForToken(admin, token);
}

beforeAll(async () => {
  await ensureControllerNamespace(admin);
  const base = await kustomize('manifests/base');
  const rbacAndAccount: Manifest[] = base.filter((o) => ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind));
  cleanups.push(await install(admin, [...rbacAndAccount, ...scopedToRun(base, run)]));
  await ensureNode(admin, nodeA);
  await ensureNode(admin, nodeB);
  cleanups.push(
    () => core.deleteNode({ name: nodeA }),
    () => core.deleteNode({ name: nodeB }),
  );
  namespace = await freshNamespace(admin, { [SCOPE_LABEL]: run });
  controllerConfig = await controllerClientOn(nodeA);
  controller = controllerConfig.makeApiClient(CoreV1Api);
  // A policy takes effect a moment after it is created, each on its own: wait until the mark
  // integrity policy denies a forged pod and the node scoping one a mark on node B.
  await createPod(apiOnlyPod('scope-probe', { nodeName: nodeB }));
  await eventually('the admission policies to take effect', async () => {
    const forgedPod = await core.createNamespacedPod({ namespace, body: apiOnlyPod('probe', {}, { annotations: { [MARK]: MARK_VALUE } }), dryRun: 'All' }).then(
      () => 'admitted',
      () => 'denied',
    );
    const markOnB = await controller.patchNamespacedPodStatus({ name: 'scope-probe', namespace, body: markPatch(MARK_VALUE), dryRun: 'All' }, mergePatch).then(
      () => 'admitted',
      () => 'denied',
    );
    return forgedPod === 'denied' && markOnB === 'denied';
  });
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

describe('the controller token bound to a pod on node A', () => {
  it('carries node A in its user, as the policy expects', async () => {
    const agentConfig = await controllerClientOn(nodeA);
    const review = await agentConfig.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} });
    expect(review.status?.userInfo?.username).toBe(`system:serviceaccount:${CONTROLLER_NAMESPACE}:${CONTROLLER_SERVICE_ACCOUNT}`);
    expect(review.status?.userInfo?.extra?.['authentication.kubernetes.io/node-name']).toEqual([nodeA]);
  });

  it('may mark a pod on node A, change the mark and remove it (merge patch through pods/status)', async () => {
    const before = await createPod(apiOnlyPod('on-a', { nodeName: nodeA }, { annotations: { 'example.com/keep': 'yes' } }));
    const marked = await patchStatus(controller, 'on-a', markPatch(MARK_VALUE));
    expect(marked.metadata?.annotations).toEqual({ 'example.com/keep': 'yes', [MARK]: MARK_VALUE });
    // What such a write changes besides the mark: only what the API server maintains itself.
    const withoutBookkeeping = (pod: V1Pod) => ({
      ...pod,
      metadata: { ...pod.metadata, annotations: undefined, resourceVersion: undefined, managedFields: undefined },
    });
    expect(withoutBookkeeping(marked)).toEqual(withoutBookkeeping(before));
    expect(marked.metadata?.generation).toBe(before.metadata?.generation);
    const changed = JSON.stringify({ state: 'error', at: '2026-11-23T00:00:01Z', reason: 'test' });
    await patchStatus(controller, 'on-a', markPatch(changed));
    expect((await annotationsOf('on-a'))[MARK]).toBe(changed);
    await patchStatus(controller, 'on-a', markPatch(null));
    expect(await annotationsOf('on-a')).toEqual({ 'example.com/keep': 'yes' });
  });

  it('is denied marking a pod on node B', async () => {
    await createPod(apiOnlyPod('on-b', { nodeName: nodeB }));
    const failure = await apiFailure(patchStatus(controller, 'on-b', markPatch(MARK_VALUE)));
    expect(failure.code).toBe(403);
    expect(failure.message).toContain(`pod-network-controller-node-scoping-${run}`);
    expect(failure.message).toContain(`on node ${nodeA} may not update a pod of another node`);
    expect(await annotationsOf('on-b')).toEqual({});
  });

  it('is denied marking a pod not yet scheduled', async () => {
    await createPod(apiOnlyPod('unscheduled'));
    const failure = await apiFailure(patchStatus(controller, 'unscheduled', markPatch(MARK_VALUE)));
    expect(failure.code).toBe(403);
    expect(failure.message).toContain('may not update a pod of another node');
  });

  it.each([
    ['a label', { metadata: { labels: { 'example.com/owned': 'yes' } } }, 'may change nothing on a pod but'],
    ['another annotation', { metadata: { annotations: { 'example.com/other': 'x' } } }, 'may change no annotation but'],
    ['the re-init request', { metadata: { annotations: { 'pod-network-controller.io/reinit': 'x' } } }, 'may change no annotation but'],
    ['a finalizer', { metadata: { finalizers: ['example.com/hold'] } }, 'may change nothing on a pod but'],
    ['the pod status', { status: { phase: 'Failed' } }, 'may change nothing on a pod but'],
    ['a label along with the mark', markPatch(MARK_VALUE, { metadata: { labels: { 'example.com/owned': 'yes' } } }), 'may change nothing on a pod but'],
  ])('is denied changing %s on a pod of its own node', async (_what, body, message) => {
    const name = `own-${randomBytes(3).toString('hex')}`;
    const before = await createPod(apiOnlyPod(name, { nodeName: nodeA }));
    const failure = await apiFailure(patchStatus(controller, name, body));
    expect(failure.code).toBe(403);
    expect(failure.message).toContain(message);
    const after = await core.readNamespacedPod({ name, namespace });
    expect(after.metadata?.resourceVersion).toBe(before.metadata?.resourceVersion);
  });

  it('is denied updating pods outside pods/status even when RBAC is widened to allow it', async () => {
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace,
      body: { metadata: { name: 'widened' }, rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['patch', 'delete'] }] },
    });
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name: 'widened' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'widened' },
        subjects: [{ kind: 'ServiceAccount', name: CONTROLLER_SERVICE_ACCOUNT, namespace: CONTROLLER_NAMESPACE }],
      },
    });
    await createPod(apiOnlyPod('widened-target', { nodeName: nodeA }));
    // RBAC changes reach the authorizer through an informer: wait until the patch gets past RBAC.
    let failure = await apiFailure(patchPod(controller, 'widened-target', markPatch(MARK_VALUE)));
    await eventually('the widened Role to take effect', async () => {
      failure = await apiFailure(patchPod(controller, 'widened-target', markPatch(MARK_VALUE)));
      return failure.message.includes('ValidatingAdmissionPolicy');
    });
    expect(failure.code).toBe(403);
    expect(failure.message).toContain('may only update pods through the status subresource');
    const deletion = await apiFailure(controller.deleteNamespacedPod({ name: 'widened-target', namespace }));
    expect(deletion.code).toBe(403);
    expect(deletion.message).toContain('may only update pods through the status subresource');
    expect(await annotationsOf('widened-target')).toEqual({});
  });

  it('a controller token bound to no pod (so no node) may mark nothing', async () => {
    const unbound = kubeConfigForToken(admin, await createServiceAccountToken(admin, CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT));
    await createPod(apiOnlyPod('unbound-target', { nodeName: nodeA }));
    const failure = await apiFailure(patchStatus(unbound.makeApiClient(CoreV1Api), 'unbound-target', markPatch(MARK_VALUE)));
    expect(failure.code).toBe(403);
    expect(failure.message).toContain('the token is not bound to a pod on a node');
  });
});

describe("the agent's own mark writer, with the controller token of node A", () => {
  function agentWriter(): PodStatusWriter {
    const cluster = controllerConfig.getCurrentCluster()!;
    const token = controllerConfig.getCurrentUser()!.token!;
    const ca = adminKubeConfig().getCurrentCluster()!.caData!;
    return new PodStatusWriter(
      new KubeClient({
        server: new URL(cluster.server),
        ca: Buffer.from(ca, 'base64'),
        insecureSkipTlsVerify: false,
        token: () => token,
        source: 'test token',
      }),
    );
  }

  it('passes both policies on a pod of node A', async () => {
    const pod = await createPod(apiOnlyPod('agent-writes-a', { nodeName: nodeA }));
    const mark = { state: 'initialized' as const, at: '2026-11-23T00:00:02Z', netns: 4026532999, rules: 'fedcba9876543210' };
    const result = await agentWriter().writeMark({ namespace, name: 'agent-writes-a', uid: pod.metadata!.uid! }, mark);
    expect(result).not.toBe('gone');
    expect(parseMark((await annotationsOf('agent-writes-a'))[MARK]!)).toEqual(mark);
  });

  it('is refused (403) on a pod of node B', async () => {
    const pod = await createPod(apiOnlyPod('agent-writes-b', { nodeName: nodeB }));
    const write = agentWriter().writeMark({ namespace, name: 'agent-writes-b', uid: pod.metadata!.uid! }, { state: 'initialized', at: 'x' });
    await expect(write).rejects.toBeInstanceOf(KubeApiError);
    await expect(write).rejects.toMatchObject({ status: 403 });
    expect(await annotationsOf('agent-writes-b')).toEqual({});
  });
});

describe('mark integrity', () => {
  it('denies creating a pod that carries the mark, even for a cluster admin', async () => {
    const failure = await apiFailure(createPod(apiOnlyPod('forged', { nodeName: nodeA }, { annotations: { [MARK]: MARK_VALUE } })));
    expect(failure.code).toBe(403);
    expect(failure.message).toContain(`pod-network-controller-mark-integrity-${run}`);
    expect(failure.message).toContain('a pod may not be created (or bound) with it');
  });

  it('denies a pods/binding that would copy the mark onto the pod', async () => {
    await createPod(apiOnlyPod('to-bind'));
    const binding = (annotations: Record<string, string>) => ({
      metadata: { name: 'to-bind', annotations },
      target: { apiVersion: 'v1', kind: 'Node', name: nodeA },
    });
    const failure = await apiFailure(core.createNamespacedPodBinding({ name: 'to-bind', namespace, body: binding({ [MARK]: MARK_VALUE }) }));
    expect(failure.code).toBe(403);
    expect(failure.message).toContain('may not be created (or bound) with it');
    await core.createNamespacedPodBinding({ name: 'to-bind', namespace, body: binding({ 'example.com/bound': 'yes' }) });
    const bound = await core.readNamespacedPod({ name: 'to-bind', namespace });
    expect(bound.spec?.nodeName).toBe(nodeA);
    expect(bound.metadata?.annotations).toEqual({ 'example.com/bound': 'yes' });
  });

  describe('another user allowed to patch pods and pods/status', () => {
    let editor: CoreV1Api;
    const marked = 'marked-by-controller';
    const unmarked = 'never-marked';

    beforeAll(async () => {
      const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
      await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'editor' } } });
      await rbac.createNamespacedRole({
        namespace,
        body: {
          metadata: { name: 'pod-editor' },
          rules: [{ apiGroups: [''], resources: ['pods', 'pods/status'], verbs: ['get', 'patch', 'update'] }],
        },
      });
      await rbac.createNamespacedRoleBinding({
        namespace,
        body: {
          metadata: { name: 'pod-editor' },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pod-editor' },
          subjects: [{ kind: 'ServiceAccount', name: 'editor', namespace }],
        },
      });
      editor = kubeConfigForToken(admin, await createServiceAccountToken(admin, namespace, 'editor')).makeApiClient(CoreV1Api);
      await createPod(apiOnlyPod(marked, { nodeName: nodeA }));
      await patchStatus(controller, marked, markPatch(MARK_VALUE));
      await createPod(apiOnlyPod(unmarked, { nodeName: nodeA }));
    });

    it('may change other metadata, the re-init request included (so RBAC is not what stops it below)', async () => {
      await patchPod(editor, marked, { metadata: { labels: { 'example.com/tier': 'web' }, annotations: { 'pod-network-controller.io/reinit': 'r1' } } });
      const pod = await core.readNamespacedPod({ name: marked, namespace });
      expect(pod.metadata?.labels).toEqual({ 'example.com/tier': 'web' });
      expect(pod.metadata?.annotations).toEqual({ [MARK]: MARK_VALUE, 'pod-network-controller.io/reinit': 'r1' });
    });

    const forged = markPatch(JSON.stringify({ state: 'initialized', at: 'x', netns: 1 }));
    it.each([
      ['changing the mark through pods', () => marked, (name: string) => patchPod(editor, name, forged), MARK_VALUE],
      ['changing the mark through pods/status', () => marked, (name: string) => patchStatus(editor, name, forged), MARK_VALUE],
      ['removing the mark', () => marked, (name: string) => patchPod(editor, name, markPatch(null)), MARK_VALUE],
      ['adding the mark to an unmarked pod', () => unmarked, (name: string) => patchStatus(editor, name, markPatch(MARK_VALUE)), undefined],
    ])('is denied %s', async (_what, target, request, markAfter) => {
      const failure = await apiFailure(request(target()));
      expect(failure.code).toBe(403);
      expect(failure.message).toContain(`pod-network-controller-mark-integrity-${run}`);
      expect(failure.message).toContain('may be added, changed or removed only by system:serviceaccount:pod-network-controller:pod-network-controller');
      expect((await annotationsOf(target()))[MARK]).toBe(markAfter);
    });
  });
});
