// The controller's ClusterRole (manifests/base/rbac.yaml) against the real API server,
// with a token of the controller's ServiceAccount: exactly what the agent uses, nothing more.
import { randomBytes } from 'node:crypto';
import { AuthorizationV1Api, CoreV1Api, PatchStrategy, setHeaderOptions, type V1ResourceAttributes } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminKubeConfig, freshNamespace } from '../support/cluster.ts';
import { createServiceAccountToken, ensureNode, kubeConfigForToken } from '../../hack/lib/kube-objects.ts';
import {
  CONTROLLER_NAMESPACE,
  CONTROLLER_SERVICE_ACCOUNT,
  MARK,
  apiFailure,
  apiOnlyPod,
  ensureControllerNamespace,
  install,
  kustomize,
} from './deploy-support.ts';

const admin = adminKubeConfig();
const core = admin.makeApiClient(CoreV1Api);
const node = `pnc-deploy-rbac-${randomBytes(3).toString('hex')}`;
const cleanups: (() => Promise<unknown>)[] = [];
let namespace: string;
let asController: ReturnType<typeof adminKubeConfig>;

beforeAll(async () => {
  await ensureControllerNamespace(admin);
  const base = await kustomize('manifests/base');
  cleanups.push(
    await install(
      admin,
      base.filter((o) => ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding'].includes(o.kind)),
    ),
  );
  await ensureNode(admin, node);
  cleanups.push(() => core.deleteNode({ name: node }));
  namespace = await freshNamespace(admin);
  const agent = await core.createNamespacedPod({
    namespace: CONTROLLER_NAMESPACE,
    body: apiOnlyPod(`pnc-agent-${node}`, { nodeName: node, serviceAccountName: CONTROLLER_SERVICE_ACCOUNT }),
  });
  cleanups.push(() => core.deleteNamespacedPod({ name: agent.metadata!.name!, namespace: CONTROLLER_NAMESPACE, gracePeriodSeconds: 0 }));
  const token = await createServiceAccountToken(admin, CONTROLLER_NAMESPACE, CONTROLLER_SERVICE_ACCOUNT, {
    boundPod: { name: agent.metadata!.name!, uid: agent.metadata!.uid! },
  });
  asController = kubeConfigForToken(admin, token);
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

describe('the controller ServiceAccount', () => {
  // [verb, group, resource, subresource, allowed]: the agent contract's list, and what must stay out of reach.
  const cases: [string, string, string, string, boolean][] = [
    ['get', '', 'pods', '', true],
    ['list', '', 'pods', '', true],
    ['watch', '', 'pods', '', true],
    ['patch', '', 'pods', 'status', true],
    ['get', '', 'namespaces', '', true],
    ['list', '', 'namespaces', '', true],
    ['watch', '', 'namespaces', '', true],
    ['create', 'events.k8s.io', 'events', '', true],
    ['patch', 'events.k8s.io', 'events', '', true],
    ['update', '', 'pods', '', false],
    ['patch', '', 'pods', '', false],
    ['create', '', 'pods', '', false],
    ['delete', '', 'pods', '', false],
    ['update', '', 'pods', 'status', false],
    ['create', '', 'pods', 'exec', false],
    ['create', '', 'pods', 'eviction', false],
    ['update', '', 'pods', 'ephemeralcontainers', false],
    ['get', '', 'secrets', '', false],
    ['list', '', 'secrets', '', false],
    ['get', '', 'configmaps', '', false],
    ['patch', '', 'namespaces', '', false],
    ['get', '', 'nodes', '', false],
    ['create', '', 'serviceaccounts', 'token', false],
  ];

  it.each(cases)('%s %s/%s/%s: allowed=%s (SelfSubjectAccessReview)', async (verb, group, resource, subresource, allowed) => {
    const attributes: V1ResourceAttributes = { verb, group, resource, subresource, namespace };
    const review = await asController.makeApiClient(AuthorizationV1Api).createSelfSubjectAccessReview({ body: { spec: { resourceAttributes: attributes } } });
    expect(review.status?.allowed).toBe(allowed);
  });

  it('cannot update a pod spec', async () => {
    const pod = await core.createNamespacedPod({ namespace, body: apiOnlyPod('spec-target', { nodeName: node }) });
    pod.spec!.activeDeadlineSeconds = 60;
    const failure = await apiFailure(asController.makeApiClient(CoreV1Api).replaceNamespacedPod({ name: 'spec-target', namespace, body: pod }));
    expect(failure.code).toBe(403);
    expect(failure.message).toContain('cannot update resource "pods"');
    expect((await core.readNamespacedPod({ name: 'spec-target', namespace })).spec?.activeDeadlineSeconds).toBeUndefined();
  });

  it('cannot read secrets', async () => {
    await core.createNamespacedSecret({ namespace, body: { metadata: { name: 'not-yours' }, stringData: { password: 'x' } } });
    const failure = await apiFailure(asController.makeApiClient(CoreV1Api).readNamespacedSecret({ name: 'not-yours', namespace }));
    expect(failure.code).toBe(403);
    expect(failure.message).toContain('cannot get resource "secrets"');
  });

  it('can patch pods/status (the mark) and read the pod back', async () => {
    await core.createNamespacedPod({ namespace, body: apiOnlyPod('mark-target', { nodeName: node }) });
    const controllerCore = asController.makeApiClient(CoreV1Api);
    await controllerCore.patchNamespacedPodStatus(
      {
        name: 'mark-target',
        namespace,
        body: { metadata: { annotations: { [MARK]: '{"state":"pending","at":"x"}' } } },
        fieldManager: 'pod-network-controller',
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const pod = await controllerCore.readNamespacedPod({ name: 'mark-target', namespace });
    expect(pod.metadata?.annotations?.[MARK]).toBe('{"state":"pending","at":"x"}');
    expect(pod.metadata?.managedFields?.some((entry) => entry.manager === 'pod-network-controller' && entry.subresource === 'status')).toBe(true);
  });
});
