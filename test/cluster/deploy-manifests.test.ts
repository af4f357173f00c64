// Every kustomization under manifests/ as the real API server sees it (server-side
// dry-run apply with the kubectl of the same release), and the rendered objects
// checked against the agent contract.
import { beforeAll, describe, expect, it } from 'vitest';
import { SETTINGS, parseConfig } from '../../controller/src/agent/config.ts';
import { adminKubeConfig, servesMutatingAdmissionPolicyV1 } from '../support/cluster.ts';
import { ensureControllerNamespace, findManifest, kubectl, kustomize, type Manifest } from './deploy-support.ts';

const admin = adminKubeConfig();

beforeAll(async () => {
  // Namespaced objects can be dry-run only into a namespace that exists.
  await ensureControllerNamespace(admin);
});

// The injection is MutatingAdmissionPolicy v1: on 1.35, which does not serve it, deploy-injection.test.ts checks the refusal.
const servesMap = await servesMutatingAdmissionPolicyV1(admin);

// The injection's directory only where the release serves it (1.36+; CI runs both 1.37 and 1.35).
const dirs = [
  'manifests/base',
  'manifests/overlays/kubernetes',
  'manifests/overlays/openshift',
  ...(servesMap ? ['manifests/injection/admission-policy'] : []),
];

describe.each(dirs)('%s', (dir) => {
  it('passes a server-side dry-run apply of every object', async () => {
    const objects = await kustomize(dir);
    const result = await kubectl(['apply', '-k', dir, '--server-side', '--dry-run=server', '--field-manager=pnc-deploy-test']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const applied = result.stdout.split('\n').filter((line) => line.endsWith('serverside-applied (server dry run)'));
    expect(applied).toHaveLength(objects.length);
  });
});

describe('the rendered kubernetes overlay', () => {
  let objects: Manifest[];
  beforeAll(async () => {
    objects = await kustomize('manifests/overlays/kubernetes');
  });

  it('grants the controller exactly the RBAC of the agent contract', () => {
    expect(findManifest(objects, 'ClusterRole', 'pod-network-controller').rules).toEqual([
      { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: [''], resources: ['pods/status'], verbs: ['patch'] },
      { apiGroups: [''], resources: ['namespaces'], verbs: ['get', 'list', 'watch'] },
      { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
    ]);
    const binding = findManifest(objects, 'ClusterRoleBinding', 'pod-network-controller');
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'pod-network-controller', namespace: 'pod-network-controller' }]);
  });

  it('runs the DaemonSet as the contract and the issue describe', () => {
    const daemonSet = findManifest(objects, 'DaemonSet', 'pod-network-controller');
    const pod = daemonSet.spec.template.spec;
    const [container] = pod.containers;
    expect(pod.hostPID).toBe(true);
    expect(pod.hostNetwork).toBeUndefined();
    expect(pod.serviceAccountName).toBe('pod-network-controller');
    expect(pod.priorityClassName).toBe('system-node-critical');
    expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(pod.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' });
    expect(daemonSet.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    expect(container.args).toEqual(['run']);
    expect(container.securityContext.capabilities).toEqual({ drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN', 'SYS_PTRACE'] });
    expect(container.securityContext).toMatchObject({
      runAsUser: 0,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    // A slow start gets 60 s before liveness (3 x 10 s) can restart the agent.
    expect(container.startupProbe).toEqual({ httpGet: { path: '/healthz', port: 'http-metrics' }, periodSeconds: 2, failureThreshold: 30 });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http-metrics' });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http-metrics' });
    expect(container.ports).toEqual([{ name: 'http-metrics', containerPort: 9102, protocol: 'TCP' }]);
    expect(container.env).toEqual([
      { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      { name: 'POD_UID', valueFrom: { fieldRef: { fieldPath: 'metadata.uid' } } },
    ]);
    // iptables-legacy's lock file lives in /run: a private, writable emptyDir on a read-only root.
    expect(container.volumeMounts).toContainEqual({ name: 'run', mountPath: '/run' });
    expect(pod.volumes).toContainEqual({ name: 'run', emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } });
    expect(container.image).toMatch(/^ghcr\.io\/pod-network-controller\/controller:\d+\.\d+\.\d+$/);
  });

  it("configures the controller with settings the agent's own parser accepts", () => {
    const daemonSet = findManifest(objects, 'DaemonSet', 'pod-network-controller');
    const container = daemonSet.spec.template.spec.containers[0];
    const configMap = findManifest(objects, 'ConfigMap', container.envFrom[0].configMapRef.name);
    expect(configMap.metadata.namespace).toBe('pod-network-controller');
    const known = SETTINGS.map((setting) => setting.env);
    expect(Object.keys(configMap.data).filter((key) => !known.includes(key))).toEqual([]);
    // As the kubelet would fill the downward-API variables in.
    const podUid = '0f2c9a4e-5b7d-4c1e-9a3b-6d8e2f1a4c7b';
    const config = parseConfig({ ...configMap.data, NODE_NAME: 'node-1', POD_NAMESPACE: 'pod-network-controller', POD_UID: podUid }, []);
    expect(config.podUid).toBe(podUid);
    expect(config.httpPort).toBe(container.ports[0].containerPort);
    expect(config.waiterContainer).toBe('pnc-init-waiter');
    expect(config.excludedNamespaces.has('pod-network-controller')).toBe(true);
  });

  it('keeps cluster-scoped objects free of a namespace', () => {
    for (const kind of ['ClusterRole', 'ClusterRoleBinding', 'ValidatingAdmissionPolicy', 'ValidatingAdmissionPolicyBinding', 'Namespace']) {
      for (const object of objects.filter((o) => o.kind === kind)) expect(object.metadata.namespace, `${kind}/${object.metadata.name}`).toBeUndefined();
    }
  });
});

describe('the rendered openshift overlay', () => {
  // OpenShift's real admission of these objects: test/cluster/openshift-scc.test.ts.
  it("lets only the controller's pods use OpenShift's privileged SCC, and brings no SCC of its own", async () => {
    const objects = await kustomize('manifests/overlays/openshift');
    expect(objects.filter((o) => o.kind === 'SecurityContextConstraints')).toEqual([]);
    const role = findManifest(objects, 'ClusterRole', 'pod-network-controller-scc');
    expect(role.rules).toEqual([
      { apiGroups: ['security.openshift.io'], resources: ['securitycontextconstraints'], resourceNames: ['privileged'], verbs: ['use'] },
    ]);
    const binding = findManifest(objects, 'RoleBinding', 'pod-network-controller-scc');
    expect(binding.metadata.namespace).toBe('pod-network-controller');
    expect(binding.roleRef).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'pod-network-controller-scc' });
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'pod-network-controller', namespace: 'pod-network-controller' }]);
    const pod = findManifest(objects, 'DaemonSet', 'pod-network-controller').spec.template.spec;
    expect(pod.containers[0].securityContext).toMatchObject({ privileged: true, allowPrivilegeEscalation: true });
    expect(findManifest(objects, 'Namespace', 'pod-network-controller').metadata.labels).toMatchObject({
      'pod-security.kubernetes.io/enforce': 'privileged',
      'security.openshift.io/scc.podSecurityLabelSync': 'false',
    });
  });
});
