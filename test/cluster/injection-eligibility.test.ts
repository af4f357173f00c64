// One definition of a mesh pod: the MutatingAdmissionPolicy (manifests/injection/admission-policy)
// gives the init-waiter to exactly the pods the agent programs. Each pod shape of the table is
// admitted by the real policy on the real API server (a server-side dry run) and judged by the
// agent's own eligibility function with the agent's own configuration parser, under the shipped
// settings and under custom container names and excluded namespaces: a pod that gets a waiter the
// agent never satisfies hangs in Init for good; a pod the agent programs without a waiter starts
// its app before its rules are proven.
import { CoreV1Api, type V1Container, type V1ObjectMeta, type V1Pod, type V1PodSpec } from '@kubernetes/client-node';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../controller/src/agent/config.ts';
import { decideEligibility } from '../../controller/src/agent/eligibility.ts';
import { INITIALIZE_ANNOTATION } from '../../controller/src/pod-contract/index.ts';
import { adminKubeConfig, freshNamespace, servesMutatingAdmissionPolicyV1 } from '../support/cluster.ts';
import { SCOPE_LABEL, apiOnlyPod, eventually, findManifest, install, kustomize, scopedToRun, type Manifest } from './deploy-support.ts';

const admin = adminKubeConfig();
const core = admin.makeApiClient(CoreV1Api);
const served = await servesMutatingAdmissionPolicyV1(admin);
const cleanups: (() => Promise<void>)[] = [];

/** The settings both sides read: the policy from its parameters, the agent from its environment. */
interface Settings {
  proxyContainer: string;
  waiterContainer: string;
  /** PNC_EXCLUDED_NAMESPACES as written; `{excluded}` stands for the test's excluded namespace. */
  excludedNamespaces: string;
}

/** Where a case's pod is created. */
type Place = 'mesh' | 'excluded' | 'agent';

interface Case {
  name: string;
  place?: Place;
  /** The pod, given the settings' container names. */
  pod: (names: { proxy: string; waiter: string }) => { metadata?: V1ObjectMeta; spec: Partial<V1PodSpec> };
}

const app: V1Container = { name: 'app', image: 'example.invalid/app:1' };
const container = (name: string): V1Container => ({ name, image: 'example.invalid/proxy:1' });
const mesh = (proxy: string, metadata: V1ObjectMeta = {}, spec: Partial<V1PodSpec> = {}) => ({
  metadata,
  spec: { containers: [app, container(proxy)], ...spec },
});
const INJECT = 'sidecar.istio.io/inject';

const CASES: Case[] = [
  { name: 'a mesh pod', pod: ({ proxy }) => mesh(proxy) },
  { name: 'a native-sidecar proxy', pod: ({ proxy }) => ({ spec: { containers: [app], initContainers: [{ ...container(proxy), restartPolicy: 'Always' }] } }) },
  { name: 'no proxy', pod: () => ({ spec: { containers: [app] } }) },
  {
    name: 'no proxy, opted in by annotation',
    pod: () => ({ metadata: { annotations: { 'pod-network-controller.io/initialize': 'true' } }, spec: { containers: [app] } }),
  },
  { name: 'a container named istio-proxy', pod: () => mesh('istio-proxy') },
  { name: 'a container named envoy', pod: () => mesh('envoy') },
  { name: 'a Job pod (restartPolicy Never)', pod: ({ proxy }) => mesh(proxy, {}, { restartPolicy: 'Never' }) },
  { name: 'hostNetwork', pod: ({ proxy }) => mesh(proxy, {}, { hostNetwork: true }) },
  { name: 'opted out by annotation', pod: ({ proxy }) => mesh(proxy, { annotations: { [INJECT]: 'false' } }) },
  { name: 'opted out by label', pod: ({ proxy }) => mesh(proxy, { labels: { [INJECT]: 'false' } }) },
  { name: 'opted out by annotation "0" (Go ParseBool)', pod: ({ proxy }) => mesh(proxy, { annotations: { [INJECT]: '0' } }) },
  { name: 'opted out by label "False"', pod: ({ proxy }) => mesh(proxy, { labels: { [INJECT]: 'False' } }) },
  { name: 'annotation "no" (not a false of ParseBool)', pod: ({ proxy }) => mesh(proxy, { annotations: { [INJECT]: 'no' } }) },
  { name: 'annotation "true" over label "false"', pod: ({ proxy }) => mesh(proxy, { annotations: { [INJECT]: 'true' }, labels: { [INJECT]: 'false' } }) },
  { name: 'an OpenShift build pod (annotation)', pod: ({ proxy }) => mesh(proxy, { annotations: { 'openshift.io/build.name': 'app-1' } }) },
  { name: 'an OpenShift deployer pod (label)', pod: ({ proxy }) => mesh(proxy, { labels: { 'openshift.io/deployer-pod-for.name': 'app-1' } }) },
  { name: 'in an excluded namespace', place: 'excluded', pod: ({ proxy }) => mesh(proxy) },
  { name: "in the agent's namespace", place: 'agent', pod: ({ proxy }) => mesh(proxy) },
  {
    name: 'already injected',
    pod: ({ proxy, waiter }) => ({
      spec: { containers: [app, container(proxy)], initContainers: [{ name: waiter, image: 'example.invalid/waiter:1' }] },
    }),
  },
];

interface Verdict {
  /** The init containers the policy added. */
  added: string[];
  agent: string;
  /** Whether the pod came with its waiter already. */
  hadWaiter: boolean;
}

interface Setup {
  settings: Settings;
  places: Record<Place, string>;
  agentPolicy: ReturnType<typeof parseConfig>;
}

/**
 * Installs the shipped policy bound to fresh namespaces, its parameters (in the namespace standing
 * for the agent's) being the shipped ones with SETTINGS over them.
 */
async function installWith(policyObjects: Manifest[], shippedParams: Manifest, settings: Settings): Promise<Setup> {
  const scope = randomBytes(3).toString('hex');
  const labels = { 'pod-network-controller.io/inject': 'enabled', [SCOPE_LABEL]: scope };
  const places: Record<Place, string> = {
    mesh: await freshNamespace(admin, labels),
    excluded: await freshNamespace(admin, labels),
    agent: await freshNamespace(admin, labels),
  };
  const excludedNamespaces = settings.excludedNamespaces.replace('{excluded}', places.excluded);
  const params: Manifest = {
    ...shippedParams,
    metadata: { name: 'pod-network-controller-injection', namespace: places.agent },
    data: { ...shippedParams.data, proxyContainer: settings.proxyContainer, waiterContainer: settings.waiterContainer, excludedNamespaces },
  };
  const policies = scopedToRun(policyObjects, scope).map((o) => {
    if (o.kind === 'MutatingAdmissionPolicyBinding') o.spec.paramRef = { ...o.spec.paramRef, name: params.metadata.name, namespace: places.agent };
    return o;
  });
  // The namespaces go at the end of the file; the cluster-scoped policy and binding with these.
  cleanups.push(await install(admin, [params, ...policies]));
  // A policy takes effect a moment after it is created. One that never injects such a pod (a
  // policy blind to the settings) is left to the cases to show.
  await eventually('the policy to take effect', async () => {
    const probe = await core.createNamespacedPod({ namespace: places.mesh, body: apiOnlyPod('probe', mesh(settings.proxyContainer).spec), dryRun: 'All' });
    return probe.spec?.initContainers?.some((c) => c.name === settings.waiterContainer) ?? false;
  }).catch(() => undefined);
  // The agent as its DaemonSet runs it: POD_NAMESPACE from the downward API, the rest from its ConfigMap.
  const agentPolicy = parseConfig(
    {
      NODE_NAME: 'node-1',
      POD_NAMESPACE: places.agent,
      PNC_PROXY_CONTAINER: settings.proxyContainer,
      PNC_WAITER_CONTAINER: settings.waiterContainer,
      PNC_EXCLUDED_NAMESPACES: excludedNamespaces,
    },
    [],
  );
  return { settings, places, agentPolicy };
}

/** What each side says of the pod as the API server admitted it. */
async function judge(setup: Setup, testCase: Case): Promise<Verdict> {
  const { settings, places, agentPolicy } = setup;
  const shape = testCase.pod({ proxy: settings.proxyContainer, waiter: settings.waiterContainer });
  const body: V1Pod = apiOnlyPod(`case-${randomBytes(3).toString('hex')}`, shape.spec, shape.metadata);
  const admitted = await core.createNamespacedPod({ namespace: places[testCase.place ?? 'mesh'], body, dryRun: 'All' });
  const before = new Set((body.spec?.initContainers ?? []).map((c) => c.name));
  // A namespace labelled for injection is one whose pods belong in the mesh: the agent is asked as
  // if it were opted in, so a mesh pod left without a waiter counts as a disagreement too.
  const eligibility = decideEligibility(admitted, { [INITIALIZE_ANNOTATION]: 'true' }, agentPolicy);
  return {
    added: (admitted.spec?.initContainers ?? []).map((c) => c.name).filter((name) => !before.has(name)),
    agent: eligibility.eligible ? `programs (${eligibility.reason})` : `skips (${eligibility.reason})`,
    hadWaiter: before.has(settings.waiterContainer),
  };
}

/** Each configuration from the agent's shipped ConfigMap (manifests/base/controller.env). */
const CONFIGURATIONS: [string, (agent: Record<string, string>) => Settings][] = [
  [
    'as shipped (one more excluded namespace)',
    (agent) => ({
      proxyContainer: agent.PNC_PROXY_CONTAINER!,
      waiterContainer: agent.PNC_WAITER_CONTAINER!,
      excludedNamespaces: `${agent.PNC_EXCLUDED_NAMESPACES},{excluded}`,
    }),
  ],
  // Other names, and a list the agent trims: both sides read the same words.
  ['with custom names', () => ({ proxyContainer: 'envoy', waiterContainer: 'mesh-waiter', excludedNamespaces: 'monitoring, {excluded} ' })],
];

describe.runIf(served)('the injection policy and the agent agree on every pod shape', () => {
  let shippedParams: Manifest;
  let shippedAgent: Record<string, string>;
  const setups = new Map<string, Setup>();

  beforeAll(async () => {
    const policyObjects = await kustomize('manifests/injection/admission-policy');
    shippedParams = findManifest(policyObjects, 'ConfigMap', 'pod-network-controller-injection');
    const agentConfig = (await kustomize('manifests/overlays/kubernetes')).find(
      (o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('pod-network-controller-config'),
    );
    shippedAgent = agentConfig!.data as Record<string, string>;
    for (const [name, settingsOf] of CONFIGURATIONS) {
      setups.set(name, await installWith(policyObjects, shippedParams, settingsOf(shippedAgent)));
    }
  });
  afterAll(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
  });

  it("ships the policy's parameters with the agent's own settings", () => {
    expect(shippedParams.data).toMatchObject({
      proxyContainer: shippedAgent.PNC_PROXY_CONTAINER,
      waiterContainer: shippedAgent.PNC_WAITER_CONTAINER,
      excludedNamespaces: shippedAgent.PNC_EXCLUDED_NAMESPACES,
    });
  });

  describe.each(CONFIGURATIONS.map(([name]) => name))('%s', (configuration) => {
    it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_name, testCase) => {
      const verdict = await judge(setups.get(configuration)!, testCase);
      // The waiter, by its configured name, where the agent programs a pod that has none yet; nothing anywhere else.
      const expected = verdict.agent.startsWith('programs') && !verdict.hadWaiter ? [setups.get(configuration)!.settings.waiterContainer] : [];
      expect(verdict).toEqual({ ...verdict, added: expected });
    });
  });
});
