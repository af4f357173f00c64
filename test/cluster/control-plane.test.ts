// The local control plane is a real one: the pinned release answers, and Pod Security,
// RBAC, pod-bound ServiceAccount tokens and admission policies are enforced by the apiserver itself.
import { AdmissionregistrationV1Api, AuthenticationV1Api, CoreV1Api, RbacAuthorizationV1Api, VersionApi } from '@kubernetes/client-node';
import type { V1Pod } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import { adminKubeConfig, freshNamespace, servesMutatingAdmissionPolicyV1 } from '../support/cluster.ts';
import { createServiceAccountToken, ensureNode, kubeConfigForToken } from '../../hack/lib/kube-objects.ts';

const admin = adminKubeConfig();
const core = admin.makeApiClient(CoreV1Api);
const suffix = () => randomBytes(3).toString('hex');
const servesMap = await servesMutatingAdmissionPolicyV1(admin);

/** The release hack/build-k8s-binaries.sh pins (its default, unless the run asks for another). */
async function pinnedRelease(): Promise<string> {
  const script = await readFile(new URL('../../hack/build-k8s-binaries.sh', import.meta.url), 'utf8');
  const pinned = /K8S_VERSION=\$\{K8S_VERSION:-\$\{PNC_KUBERNETES_VERSION:-(v[0-9.]+)\}\}/.exec(script)?.[1];
  if (!pinned) throw new Error('no K8S_VERSION default in hack/build-k8s-binaries.sh');
  return process.env.K8S_VERSION ?? process.env.PNC_KUBERNETES_VERSION ?? pinned;
}

/** Retries ATTEMPT until it stops throwing: authorizer and policy caches follow the API a moment later. */
async function eventually<T>(what: string, attempt: () => Promise<T>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`${what}: still failing after ${timeoutMs} ms`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

const statusCode = (promise: Promise<unknown>) =>
  promise.then(
    () => 200,
    (error: { code?: number }) => error.code ?? -1,
  );
/** The apiserver's Status message of a rejected request ('' when it was admitted). */
const denialMessage = (promise: Promise<unknown>) =>
  promise.then(
    () => '',
    (error: { body?: unknown }) => (JSON.parse(String(error.body)) as { message: string }).message,
  );

function pod(name: string, spec: Partial<V1Pod['spec']> = {}, containerSecurity: object = {}): V1Pod {
  return {
    metadata: { name },
    spec: {
      containers: [{ name: 'app', image: 'registry.invalid/app:1', securityContext: containerSecurity }],
      ...spec,
    },
  };
}

describe('local control plane', () => {
  it('serves the pinned Kubernetes release', async () => {
    const version = await admin.makeApiClient(VersionApi).getCode();
    expect(version.gitVersion).toBe(await pinnedRelease());
  });

  it('enforces Pod Security "restricted" with the apiserver own message', async () => {
    const namespace = await freshNamespace(admin, { 'pod-security.kubernetes.io/enforce': 'restricted' });
    const privileged = pod('privileged', {}, { privileged: true });
    const denial = await denialMessage(core.createNamespacedPod({ namespace, body: privileged }));
    expect(denial).toContain('violates PodSecurity "restricted:latest"');
    expect(denial).toContain('privileged (container "app" must not set securityContext.privileged=true)');

    const compliant = pod(
      'compliant',
      { securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } } },
      { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
    );
    const created = await core.createNamespacedPod({ namespace, body: compliant });
    expect(created.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('applies RBAC to ServiceAccount tokens: 403 without a RoleBinding, allowed with one', async () => {
    const namespace = await freshNamespace(admin);
    const token = await createServiceAccountToken(admin, namespace, 'reader');
    const asReader = kubeConfigForToken(admin, token).makeApiClient(CoreV1Api);
    expect(await statusCode(asReader.listNamespacedPod({ namespace }))).toBe(403);

    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace,
      body: { metadata: { name: 'pod-reader' }, rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['list'] }] },
    });
    await rbac.createNamespacedRoleBinding({
      namespace,
      body: {
        metadata: { name: 'reader-reads-pods' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'pod-reader' },
        subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace }],
      },
    });
    const listed = await eventually('the RoleBinding to take effect', () => asReader.listNamespacedPod({ namespace }));
    expect(listed.items).toEqual([]);
    // Only what the Role grants: another namespace's pods stay forbidden.
    expect(await statusCode(asReader.listNamespacedPod({ namespace: 'default' }))).toBe(403);
  });

  it('puts the node name into the user of a pod-bound token', async () => {
    const namespace = await freshNamespace(admin);
    const nodeName = `pnc-node-${suffix()}`;
    await ensureNode(admin, nodeName);
    onTestFinished(async () => {
      await core.deleteNode({ name: nodeName });
    });
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'agent' } } });
    const agent = await core.createNamespacedPod({ namespace, body: pod('agent', { nodeName, serviceAccountName: 'agent' }) });
    const token = await createServiceAccountToken(admin, namespace, 'agent', {
      boundPod: { name: 'agent', uid: agent.metadata!.uid! },
    });
    const review = await kubeConfigForToken(admin, token).makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} });
    const user = review.status?.userInfo;
    expect(user?.username).toBe(`system:serviceaccount:${namespace}:agent`);
    expect(user?.extra?.['authentication.kubernetes.io/node-name']).toEqual([nodeName]);
    expect(user?.extra?.['authentication.kubernetes.io/pod-uid']).toEqual([agent.metadata!.uid]);
  });

  it('enforces a ValidatingAdmissionPolicy through its binding', async () => {
    const namespace = await freshNamespace(admin, { 'pnc-test/vap': 'on' });
    const otherNamespace = await freshNamespace(admin);
    const policyName = `pnc-test-no-forbidden-${suffix()}`;
    const admission = admin.makeApiClient(AdmissionregistrationV1Api);
    await admission.createValidatingAdmissionPolicy({
      body: {
        metadata: { name: policyName },
        spec: {
          failurePolicy: 'Fail',
          matchConstraints: {
            resourceRules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['configmaps'] }],
          },
          validations: [{ expression: "!has(object.data) || !('forbidden' in object.data)", message: 'forbidden key in data' }],
        },
      },
    });
    await admission.createValidatingAdmissionPolicyBinding({
      body: {
        metadata: { name: policyName },
        spec: {
          policyName,
          validationActions: ['Deny'],
          matchResources: { namespaceSelector: { matchLabels: { 'pnc-test/vap': 'on' } } },
        },
      },
    });
    try {
      const denied = (name: string, ns: string) => ({ namespace: ns, body: { metadata: { name }, data: { forbidden: 'x' } }, dryRun: 'All' });
      const denial = await eventually('the policy to take effect', async () => {
        const body = await denialMessage(core.createNamespacedConfigMap(denied('probe', namespace)));
        if (!body) throw new Error('admitted');
        return body;
      });
      expect(denial).toContain(`ValidatingAdmissionPolicy '${policyName}' with binding '${policyName}' denied request: forbidden key in data`);
      // Allowed content in the bound namespace, and anything outside the binding's selector.
      await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'fine' }, data: { allowed: 'x' } } });
      await core.createNamespacedConfigMap({ namespace: otherNamespace, body: { metadata: { name: 'unbound' }, data: { forbidden: 'x' } } });
    } finally {
      await admission.deleteValidatingAdmissionPolicyBinding({ name: policyName });
      await admission.deleteValidatingAdmissionPolicy({ name: policyName });
    }
  });

  it('serves MutatingAdmissionPolicy v1 from Kubernetes 1.36 on (no feature gate or runtime-config of ours), and not before', async () => {
    const minor = Number(/^v1\.(\d+)\./.exec(await pinnedRelease())?.[1]);
    expect(servesMap).toBe(minor >= 36);
  });

  // Registered where the release serves it (1.36+); CI runs it on 1.37.
  if (servesMap)
    it('applies a MutatingAdmissionPolicy v1 mutation', async () => {
      const namespace = await freshNamespace(admin, { 'pnc-test/map': 'on' });
      const policyName = `pnc-test-label-${suffix()}`;
      const mutating = admin.makeApiClient(AdmissionregistrationV1Api);
      await mutating.createMutatingAdmissionPolicy({
        body: {
          metadata: { name: policyName },
          spec: {
            failurePolicy: 'Fail',
            reinvocationPolicy: 'Never',
            matchConstraints: {
              resourceRules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['configmaps'] }],
            },
            mutations: [
              {
                patchType: 'ApplyConfiguration',
                applyConfiguration: { expression: 'Object{metadata: Object.metadata{labels: {"pnc-test/mutated": "yes"}}}' },
              },
            ],
          },
        },
      });
      await mutating.createMutatingAdmissionPolicyBinding({
        body: {
          metadata: { name: policyName },
          spec: { policyName, matchResources: { namespaceSelector: { matchLabels: { 'pnc-test/map': 'on' } } } },
        },
      });
      try {
        const labels = await eventually('the mutation to take effect', async () => {
          const created = await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'probe' } }, dryRun: 'All' });
          if (!created.metadata?.labels?.['pnc-test/mutated']) throw new Error('not mutated yet');
          return created.metadata.labels;
        });
        expect(labels).toEqual({ 'pnc-test/mutated': 'yes' });
      } finally {
        await mutating.deleteMutatingAdmissionPolicyBinding({ name: policyName });
        await mutating.deleteMutatingAdmissionPolicy({ name: policyName });
      }
    });
});
