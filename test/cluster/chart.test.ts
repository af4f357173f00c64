// The Helm chart (manifests/charts/pod-network-controller): `helm lint --strict` and its
// values.schema.json over a matrix of values, what each value renders to, the one-source check
// (the kustomize tree is exactly what the chart renders), and a server-side dry-run of every
// rendered variant on the real API server, rendered with that server's capabilities.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inject, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../controller/src/agent/config.ts';
import {
  CHART_DIR,
  INSTALL_NAMESPACE,
  ROOT,
  helmBinary,
  kustomizeTree,
  renderForKustomize,
  splitRendered,
  staleFiles,
  withoutHelmMetadata,
} from '../../hack/lib/chart.ts';
import { run } from '../../hack/lib/process.ts';
import { adminKubeConfig, freshNamespace } from '../support/cluster.ts';
import { ensureControllerNamespace, findManifest, kubectl, kustomize, type Manifest } from './deploy-support.ts';

const admin = adminKubeConfig();
let helm: string;
let scratch: string;

beforeAll(async () => {
  helm = await helmBinary();
  scratch = await mkdtemp(join(tmpdir(), 'pnc-chart-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

interface Helm {
  code: number;
  stdout: string;
  stderr: string;
}

/** helm with VALUES (a values file) over the chart; never throws. */
function helmWith(command: string[], values: object, extra: string[] = []): Helm {
  return run([helm, ...command, '--values', '-', ...extra], JSON.stringify(values));
}

function template(values: object, extra: string[] = []): Manifest[] {
  const result = helmWith(['template', 'pnc', join(ROOT, CHART_DIR)], values, ['--namespace', INSTALL_NAMESPACE, ...extra]);
  if (result.code !== 0) throw new Error(`helm template failed: ${result.stderr}`);
  return parseAllDocuments(result.stdout)
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((o): o is Manifest => o !== null);
}

const daemonSetOf = (objects: Manifest[]) => findManifest(objects, 'DaemonSet', 'pod-network-controller');
const containerOf = (objects: Manifest[]) => daemonSetOf(objects).spec.template.spec.containers[0];
const sha = `sha256:${'ab'.repeat(32)}`;

// Every PNC_* setting set to a value other than its default, with the type the schema gives it.
const everySetting = {
  proxyContainer: 'envoy',
  waiterContainer: 'mesh-waiter',
  excludedNamespaces: ['kube-system', 'monitoring'],
  allowProxyUidApps: true,
  bypassPolicy: 'strict',
  runtimeDefaultCapabilities: ['CHOWN', 'NET_BIND_SERVICE'],
  iptablesMode: 'nft',
  iptablesLockTimeout: 30,
  httpPort: 9200,
  httpAddress: '::',
  concurrency: 8,
  procRoot: '/host/proc',
  families: ['ipv4'],
  captureDns: true,
  excludeInboundPorts: [9000, 9001],
  excludeOutboundPorts: [5432],
  excludeOutboundCidrs: ['169.254.169.254/32', '2001:db8::/32'],
  logLevel: 'debug',
};

// The matrix: each row is linted with --strict and rendered; `check` says what it must render.
const matrix: [string, object, (objects: Manifest[]) => void][] = [
  [
    'defaults (Kubernetes, injection on, images by the chart version)',
    {},
    (objects) => {
      expect(containerOf(objects).image).toBe('ghcr.io/pod-network-controller/controller:0.2.0');
      expect(containerOf(objects).securityContext).toMatchObject({ privileged: false, allowPrivilegeEscalation: false });
      expect(findManifest(objects, 'ConfigMap', 'pod-network-controller-injection').data).toEqual({
        image: 'ghcr.io/pod-network-controller/init-waiter:0.2.0',
        cpuRequest: '10m',
        proxyContainer: 'istio-proxy',
        waiterContainer: 'pnc-init-waiter',
        excludedNamespaces: 'kube-system',
      });
      expect(objects.some((o) => o.metadata.name === 'pod-network-controller-scc')).toBe(false);
      expect(daemonSetOf(objects).spec.template.spec.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux' });
    },
  ],
  ...(
    [
      ['kubernetesDistribution=OpenShift', { kubernetesDistribution: 'OpenShift' }],
      ['platform=openshift (Istio spelling)', { platform: 'openshift' }],
      ['global.platform=openshift (Istio spelling)', { global: { platform: 'openshift' } }],
    ] as [string, object][]
  ).map(([name, values]): [string, object, (objects: Manifest[]) => void] => [
    name,
    values,
    (objects) => {
      expect(findManifest(objects, 'ClusterRole', 'pod-network-controller-scc').rules).toEqual([
        { apiGroups: ['security.openshift.io'], resources: ['securitycontextconstraints'], resourceNames: ['privileged'], verbs: ['use'] },
      ]);
      const binding = findManifest(objects, 'RoleBinding', 'pod-network-controller-scc');
      expect(binding.metadata.namespace).toBe(INSTALL_NAMESPACE);
      expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'pod-network-controller', namespace: INSTALL_NAMESPACE }]);
      expect(containerOf(objects).securityContext).toMatchObject({ privileged: true, allowPrivilegeEscalation: true });
      expect(findManifest(objects, 'Namespace').metadata.labels).toMatchObject({ 'security.openshift.io/scc.podSecurityLabelSync': 'false' });
      expect(objects.some((o) => o.kind === 'SecurityContextConstraints')).toBe(false);
    },
  ]),
  [
    'injection off, namespace not created',
    { injection: { enabled: false }, createNamespace: false },
    (objects) => {
      expect(objects.map((o) => o.kind)).not.toContain('MutatingAdmissionPolicy');
      expect(objects.map((o) => o.kind)).not.toContain('Namespace');
      expect(objects.some((o) => o.metadata.name === 'pod-network-controller-injection')).toBe(false);
    },
  ],
  [
    'images by digest (which wins over a tag)',
    {
      images: {
        controller: { repository: 'registry.example:5000/pnc/controller', tag: '9.9.9', digest: sha },
        initWaiter: { repository: 'registry.example/pnc/init-waiter', digest: sha, pullPolicy: 'Always' },
      },
    },
    (objects) => {
      expect(containerOf(objects).image).toBe(`registry.example:5000/pnc/controller@${sha}`);
      expect(findManifest(objects, 'ConfigMap', 'pod-network-controller-injection').data.image).toBe(`registry.example/pnc/init-waiter@${sha}`);
    },
  ],
  [
    'images by tag',
    {
      images: {
        controller: { repository: 'registry.example/pnc/controller', tag: '1.2.3' },
        initWaiter: { repository: 'registry.example/pnc/init-waiter', tag: '1.2.3' },
      },
    },
    (objects) => {
      expect(containerOf(objects).image).toBe('registry.example/pnc/controller:1.2.3');
      expect(findManifest(objects, 'ConfigMap', 'pod-network-controller-injection').data.image).toBe('registry.example/pnc/init-waiter:1.2.3');
    },
  ],
  [
    'every PNC_* setting changed, read back by the agent',
    { config: everySetting },
    (objects) => {
      const container = containerOf(objects);
      const data = findManifest(objects, 'ConfigMap', container.envFrom[0].configMapRef.name).data;
      const podUid = '0b5c2a52-8f0e-4c44-9c51-3f3a6c0d2e11';
      const config = parseConfig({ ...data, NODE_NAME: 'node-1', POD_NAMESPACE: INSTALL_NAMESPACE, POD_UID: podUid }, []);
      expect({
        ...config,
        excludedNamespaces: [...config.excludedNamespaces],
        runtimeDefaultCapabilities: [...config.runtimeDefaultCapabilities],
      }).toEqual({
        ...everySetting,
        nodeName: 'node-1',
        podNamespace: INSTALL_NAMESPACE,
        podUid,
        // The agent never touches its own namespace, whatever the list says.
        excludedNamespaces: [...everySetting.excludedNamespaces, INSTALL_NAMESPACE],
      });
      expect(container.ports[0].containerPort).toBe(9200);
      // The injection's parameters carry the same values as the agent's settings, so the policy
      // injects exactly the pods the agent programs (test/cluster/injection-eligibility.test.ts).
      const agent = findManifest(objects, 'ConfigMap', 'pod-network-controller-config').data;
      expect(findManifest(objects, 'ConfigMap', 'pod-network-controller-injection').data).toMatchObject({
        proxyContainer: agent.PNC_PROXY_CONTAINER,
        waiterContainer: agent.PNC_WAITER_CONTAINER,
        excludedNamespaces: agent.PNC_EXCLUDED_NAMESPACES,
      });
      expect(agent.PNC_PROXY_CONTAINER).toBe('envoy');
      expect(agent.PNC_EXCLUDED_NAMESPACES).toBe('kube-system,monitoring');
    },
  ],
  [
    'pod placement and rollout values',
    {
      priorityClassName: '',
      tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'mesh', effect: 'NoSchedule' }],
      nodeSelector: { 'kubernetes.io/os': 'linux', pool: 'mesh' },
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['mesh'] }] }] },
        },
      },
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '20%' } },
      podAnnotations: { 'prometheus.io/scrape': 'true' },
      podLabels: { team: 'mesh' },
      resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
      imagePullSecrets: [{ name: 'registry' }],
      injection: { cpuRequest: '500m' },
    },
    (objects) => {
      const daemonSet = daemonSetOf(objects);
      const pod = daemonSet.spec.template.spec;
      expect(pod.priorityClassName).toBeUndefined();
      expect(pod.tolerations).toEqual([{ key: 'dedicated', operator: 'Equal', value: 'mesh', effect: 'NoSchedule' }]);
      expect(pod.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux', pool: 'mesh' });
      expect(pod.affinity.nodeAffinity).toBeDefined();
      expect(pod.imagePullSecrets).toEqual([{ name: 'registry' }]);
      expect(daemonSet.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '20%' } });
      expect(daemonSet.spec.template.metadata.annotations['prometheus.io/scrape']).toBe('true');
      expect(daemonSet.spec.template.metadata.labels).toMatchObject({ team: 'mesh', 'app.kubernetes.io/name': 'pod-network-controller' });
      expect(daemonSet.spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'pod-network-controller' });
      expect(pod.containers[0].resources).toEqual({ requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } });
      expect(findManifest(objects, 'ConfigMap', 'pod-network-controller-injection').data.cpuRequest).toBe('500m');
    },
  ],
];

describe('helm lint --strict and the schema over the values matrix', () => {
  it.each(matrix)('%s', async (_name, values, check) => {
    const file = join(scratch, 'values.json');
    await writeFile(file, JSON.stringify(values));
    const lint = run([helm, 'lint', '--strict', join(ROOT, CHART_DIR), '--namespace', INSTALL_NAMESPACE, '--values', file]);
    expect(lint.stdout + lint.stderr).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(lint.code).toBe(0);
    check(template(values));
  });

  it('rolls the DaemonSet when the configuration changes, and only then', () => {
    const checksum = (values: object) => daemonSetOf(template(values)).spec.template.metadata.annotations['checksum/config'];
    expect(checksum({})).toMatch(/^[0-9a-f]{64}$/);
    expect(checksum({ config: { logLevel: 'debug' } })).not.toBe(checksum({}));
    expect(checksum({ images: { controller: { tag: '9.9.9' } } })).toBe(checksum({}));
  });

  it('names the release namespace wherever the install depends on it', () => {
    const objects = template({ kubernetesDistribution: 'OpenShift' }, ['--namespace', 'mesh-system']);
    const user = 'system:serviceaccount:mesh-system:pod-network-controller';
    const integrity = findManifest(objects, 'ValidatingAdmissionPolicy', 'pod-network-controller-mark-integrity');
    expect(integrity.spec.variables).toContainEqual({ name: 'controller', expression: `'${user}'` });
    expect(integrity.spec.validations[1].message).toContain(user);
    const scoping = findManifest(objects, 'ValidatingAdmissionPolicy', 'pod-network-controller-node-scoping');
    expect(scoping.spec.matchConditions[0].expression).toBe(`request.userInfo.username == '${user}'`);
    expect(findManifest(objects, 'MutatingAdmissionPolicyBinding').spec.paramRef.namespace).toBe('mesh-system');
    expect(findManifest(objects, 'ClusterRoleBinding').subjects[0].namespace).toBe('mesh-system');
    expect(findManifest(objects, 'RoleBinding').metadata.namespace).toBe('mesh-system');
    expect(findManifest(objects, 'Namespace').metadata.name).toBe('mesh-system');
    for (const object of objects.filter((o) => ['ServiceAccount', 'DaemonSet', 'ConfigMap', 'RoleBinding'].includes(o.kind))) {
      expect(object.metadata.namespace, `${object.kind}/${object.metadata.name}`).toBe('mesh-system');
    }
    expect(JSON.stringify(objects)).not.toContain(`:${INSTALL_NAMESPACE}:`);
  });

  it.each([
    ['', '1.35.0', 'admissionregistration.k8s.io/v1beta1'],
    ['', '1.36.0', 'admissionregistration.k8s.io/v1'],
    ['', '1.37.2', 'admissionregistration.k8s.io/v1'],
    ['v1beta1', '1.37.2', 'admissionregistration.k8s.io/v1beta1'],
    ['v1', '1.35.4', 'admissionregistration.k8s.io/v1'],
  ])('injection.apiVersion=%j on Kubernetes %s renders %s', (apiVersion, kubeVersion, expected) => {
    const objects = template({ injection: { apiVersion } }, ['--kube-version', kubeVersion]);
    expect(findManifest(objects, 'MutatingAdmissionPolicy').apiVersion).toBe(expected);
    expect(findManifest(objects, 'MutatingAdmissionPolicyBinding').apiVersion).toBe(expected);
  });

  it("follows a cluster's discovery (kinds listed) over the Kubernetes version, and refuses when it serves no MutatingAdmissionPolicy", () => {
    const discovered = (apis: string[]) => ['--kube-version', '1.37.2', ...['v1/Pod', ...apis].flatMap((api) => ['--api-versions', api])];
    const beta = template({}, discovered(['admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy']));
    expect(findManifest(beta, 'MutatingAdmissionPolicy').apiVersion).toBe('admissionregistration.k8s.io/v1beta1');
    const none = helmWith(['template', 'pnc', join(ROOT, CHART_DIR)], {}, discovered([]));
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/serves no MutatingAdmissionPolicy.*injection\.enabled=false/s);
  });

  it('renders the helm test pod only for a cluster (install), never into helm template output a user applies', () => {
    const tests = (extra: string[]) =>
      template({}, ['--api-versions', 'admissionregistration.k8s.io/v1/MutatingAdmissionPolicy', ...extra]).filter((o) => o.kind === 'Pod');
    expect(tests([])).toEqual([]);
    const [pod] = tests(['--api-versions', 'v1/Pod']);
    expect(pod!.metadata.annotations!['helm.sh/hook']).toBe('test');
    expect(pod!.metadata.namespace).toBe('default');
    expect(pod!.metadata.labels!['app.kubernetes.io/name']).not.toBe('pod-network-controller');
    expect(pod!.spec.initContainers.map((c: { name: string }) => c.name)).toEqual(['pnc-init-waiter']);
    // The waiter runs the proxy's image: with no UID of its own the agent would take it for the proxy's.
    expect(pod!.spec.initContainers[0].securityContext).toMatchObject({ runAsUser: 65532, runAsGroup: 65532 });
    expect(pod!.spec.containers[0]).toMatchObject({ name: 'istio-proxy', securityContext: { runAsUser: 1337 } });
  });

  it("renders helm uninstall's pre-delete hook only for a cluster: it removes our injection binding and nothing else, then waits for the pods", () => {
    const onCluster = ['--api-versions', 'v1/Pod', '--api-versions', 'admissionregistration.k8s.io/v1/MutatingAdmissionPolicy'];
    const hookObjects = (values: object, extra: string[]) => template(values, extra).filter((o) => o.metadata.annotations?.['helm.sh/hook'] === 'pre-delete');
    expect(hookObjects({}, onCluster.slice(2))).toEqual([]);
    const objects = hookObjects({ uninstall: { waitSeconds: 30 } }, onCluster);
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
      ['ClusterRole', 'ClusterRoleBinding', 'Job', 'ServiceAccount'].map((kind) => `${kind}/pod-network-controller-prepare-uninstall`),
    );
    expect(findManifest(objects, 'ClusterRole').rules).toEqual([
      { apiGroups: [''], resources: ['pods'], verbs: ['list'] },
      {
        apiGroups: ['admissionregistration.k8s.io'],
        resources: ['mutatingadmissionpolicybindings'],
        resourceNames: [findManifest(template({}, onCluster), 'MutatingAdmissionPolicyBinding').metadata.name],
        verbs: ['delete'],
      },
    ]);
    const job = findManifest(objects, 'Job');
    // The RBAC exists before the Job runs, and all of it goes once the hook succeeded.
    expect(job.metadata.annotations!['helm.sh/hook-weight']).toBe('0');
    expect(findManifest(objects, 'ClusterRole').metadata.annotations!['helm.sh/hook-weight']).toBe('-1');
    expect(job.metadata.annotations!['helm.sh/hook-delete-policy']).toBe('before-hook-creation,hook-succeeded');
    const pod = job.spec.template.spec;
    expect(pod.serviceAccountName).toBe('pod-network-controller-prepare-uninstall');
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 65532 });
    expect(pod.containers[0].args).toEqual([
      'prepare-uninstall',
      '--binding=pod-network-controller-inject-init-waiter',
      '--api-version=v1',
      '--waiter-container=pnc-init-waiter',
      '--timeout=30',
    ]);
    // On OpenShift restricted-v2 picks the UID; without the injection there is nothing to delete.
    const openshift = hookObjects({ kubernetesDistribution: 'OpenShift', injection: { enabled: false } }, onCluster);
    expect(findManifest(openshift, 'Job').spec.template.spec.securityContext.runAsUser).toBeUndefined();
    expect(findManifest(openshift, 'Job').spec.template.spec.containers[0].args).toEqual([
      'prepare-uninstall',
      '--waiter-container=pnc-init-waiter',
      '--timeout=120',
    ]);
    expect(findManifest(openshift, 'ClusterRole').rules).toEqual([{ apiGroups: [''], resources: ['pods'], verbs: ['list'] }]);
    // A release upgraded with --reuse-values from a chart without this value has none.
    expect(findManifest(hookObjects({ uninstall: null }, onCluster), 'Job').spec.template.spec.containers[0].args).toContain('--timeout=120');
  });

  it('installs on Kubernetes 1.35 and later, and says so to an older one', () => {
    const old = helmWith(['template', 'pnc', join(ROOT, CHART_DIR)], {}, ['--kube-version', '1.34.9']);
    expect(old.code).not.toBe(0);
    expect(old.stderr).toMatch(/kubeVersion: >=1\.35\.0-0 which is incompatible with Kubernetes v1\.34\.9/);
    const oldest = helmWith(['template', 'pnc', join(ROOT, CHART_DIR)], { injection: { enabled: false } }, ['--kube-version', '1.35.0']);
    expect(oldest.code, oldest.stderr).toBe(0);
  });

  it.each([
    ['kubernetesDistribution', { kubernetesDistribution: 'openshift' }, /kubernetesDistribution.*(Kubernetes|OpenShift)/s],
    ['an unknown top-level value', { nodeSelectors: {} }, /nodeSelectors/],
    ['an unknown setting', { config: { captureDNS: true } }, /captureDNS/],
    ['config.iptablesMode', { config: { iptablesMode: 'iptables' } }, /config\/iptablesMode/],
    ['config.concurrency', { config: { concurrency: 0 } }, /config\/concurrency/],
    ['config.httpPort as a string', { config: { httpPort: '9102' } }, /config\/httpPort/],
    ['config.families', { config: { families: ['ipv5'] } }, /config\/families/],
    ['config.excludeInboundPorts', { config: { excludeInboundPorts: [70000] } }, /config\/excludeInboundPorts/],
    ['config.excludedNamespaces', { config: { excludedNamespaces: ['Kube_System'] } }, /config\/excludedNamespaces/],
    ['config.allowProxyUidApps as a string', { config: { allowProxyUidApps: 'yes' } }, /config\/allowProxyUidApps/],
    ['config.logLevel', { config: { logLevel: 'verbose' } }, /config\/logLevel/],
    ['config.httpAddress', { config: { httpAddress: 'localhost' } }, /config\/httpAddress/],
    ['images.controller.digest', { images: { controller: { digest: 'latest' } } }, /images\/controller\/digest/],
    ['images.initWaiter.repository with a tag', { images: { initWaiter: { repository: 'example/waiter:1.0' } } }, /images\/initWaiter\/repository/],
    ['injection.apiVersion', { injection: { apiVersion: 'v2' } }, /injection\/apiVersion/],
    ['injection.cpuRequest', { injection: { cpuRequest: 'lots' } }, /injection\/cpuRequest/],
    ['podLabels taking the selector label', { podLabels: { 'app.kubernetes.io/name': 'x' } }, /podLabels/],
    ['updateStrategy.type', { updateStrategy: { type: 'Recreate' } }, /updateStrategy\/type/],
    ['tests.namespace', { tests: { namespace: 'Default' } }, /tests\/namespace/],
    ['uninstall.waitSeconds', { uninstall: { waitSeconds: 0 } }, /uninstall\/waitSeconds/],
  ])('the schema refuses a bad %s, naming it', (_name, values, message) => {
    const result = helmWith(['template', 'pnc', join(ROOT, CHART_DIR)], values);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/values don't meet the specifications of the schema/);
    expect(result.stderr).toMatch(message);
  });
});

/** A kustomize rendering as the chart's objects look without Helm's metadata, ConfigMap hash suffixes undone. */
function comparable(objects: Manifest[]): Map<string, Manifest> {
  const text = JSON.stringify(objects).replace(/"(pod-network-controller-config)-[a-z0-9]{10}"/g, '"$1"');
  return new Map((JSON.parse(text) as Manifest[]).map((o) => [`${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`, o]));
}

describe('one source: the kustomize tree is what the chart renders', () => {
  it('has every generated file as hack/render-manifests.ts writes it, and no other', async () => {
    const stale = await staleFiles(kustomizeTree(renderForKustomize(helm)));
    expect(stale, 'run npm run render:manifests').toEqual([]);
  });

  it.each([
    ['manifests/overlays/kubernetes', [{ kubernetesDistribution: 'Kubernetes', injection: { enabled: false } }]],
    ['manifests/overlays/openshift', [{ kubernetesDistribution: 'OpenShift', injection: { enabled: false } }]],
  ])('%s renders exactly the chart objects', async (dir, [values]) => {
    const fromChart = splitRendered(
      helmWith(['template', INSTALL_NAMESPACE, join(ROOT, CHART_DIR)], values!, ['--namespace', INSTALL_NAMESPACE, '--skip-tests']).stdout,
    ).map(({ doc }) => withoutHelmMetadata(doc).toJS() as Manifest);
    const fromKustomize = comparable(await kustomize(dir));
    expect([...fromKustomize.keys()].sort()).toEqual([...comparable(fromChart).keys()].sort());
    for (const [key, object] of comparable(fromChart)) expect(fromKustomize.get(key), key).toEqual(object);
  });
});

describe('every rendered variant on the real API server', () => {
  /** The MutatingAdmissionPolicy version the server serves (preferred), if any. */
  let servedMapVersion: string | undefined;
  beforeAll(async () => {
    await ensureControllerNamespace(admin);
    const resources = await kubectl(['api-resources', '--api-group=admissionregistration.k8s.io', '-o', 'wide']);
    const line = resources.stdout.split('\n').find((l) => l.startsWith('mutatingadmissionpolicies '));
    servedMapVersion = /admissionregistration\.k8s\.io\/(v1\w*)/.exec(line ?? '')?.[1];
  });

  const variants: [string, object][] = [
    ['Kubernetes', {}],
    ['OpenShift', { kubernetesDistribution: 'OpenShift' }],
    ['Kubernetes, injection off', { injection: { enabled: false } }],
    [
      'OpenShift, every setting changed, images by digest',
      { platform: 'openshift', config: everySetting, images: { controller: { digest: sha }, initWaiter: { digest: sha } } },
    ],
  ];

  it.each(variants)('%s: rendered with the server capabilities, passes a server-side dry-run apply', async (_name, given) => {
    // helm template --dry-run=server asks the server what it serves (as helm install does) and,
    // like an install, refuses to overwrite objects of no release (the namespace other tests use).
    const render = (values: object) =>
      helmWith(['template', INSTALL_NAMESPACE, join(ROOT, CHART_DIR)], values, [
        '--namespace',
        INSTALL_NAMESPACE,
        '--dry-run=server',
        '--take-ownership',
        '--kubeconfig',
        inject('kubeconfig'),
      ]);
    let rendered = render(given);
    const injecting = (given as { injection?: { enabled?: boolean } }).injection?.enabled !== false;
    if (injecting && !servedMapVersion) {
      // A stock 1.35 serves no MutatingAdmissionPolicy: the chart says what to do instead, and installs without it.
      expect(rendered.code).not.toBe(0);
      expect(rendered.stderr).toMatch(/serves no MutatingAdmissionPolicy.*injection\.enabled=false/s);
      rendered = render({ ...given, injection: { enabled: false } });
    }
    expect(rendered.code, rendered.stderr).toBe(0);
    const objects = parseAllDocuments(rendered.stdout)
      .map((doc) => doc.toJS() as Manifest | null)
      .filter((o): o is Manifest => o !== null);
    const injection = objects.find((o) => o.kind === 'MutatingAdmissionPolicy');
    // The version the server serves: v1 from 1.36 on.
    if (injection) expect(injection.apiVersion).toBe(`admissionregistration.k8s.io/${servedMapVersion}`);
    const result = await kubectl(['apply', '--server-side', '--dry-run=server', '--field-manager=pnc-chart-test', '-f', '-'], rendered.stdout);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const applied = result.stdout.split('\n').filter((line) => line.endsWith('serverside-applied (server dry run)'));
    expect(applied).toHaveLength(objects.length);
  });

  it('renders into another namespace and passes there too', async () => {
    const namespace = await freshNamespace(admin, {});
    const rendered = helmWith(['template', 'pnc', join(ROOT, CHART_DIR)], { createNamespace: false, injection: { enabled: servedMapVersion !== undefined } }, [
      '--namespace',
      namespace,
      '--dry-run=server',
      '--take-ownership',
      '--kubeconfig',
      inject('kubeconfig'),
    ]);
    expect(rendered.code, rendered.stderr).toBe(0);
    expect(rendered.stdout).toContain(`system:serviceaccount:${namespace}:pod-network-controller`);
    const result = await kubectl(['apply', '--server-side', '--dry-run=server', '--field-manager=pnc-chart-test', '-f', '-'], rendered.stdout);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });
});
