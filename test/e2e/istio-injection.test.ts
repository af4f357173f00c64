// Istio's own sidecar injector with our istiod values: the istiod chart rendered by each
// install route, pkg/kube/inject's webhook registered on the real API server through the
// chart's MutatingWebhookConfiguration, and pods injected by it. Each pod's exact shape is
// checked (classic and native sidecars, the app's own init containers, a Deployment's pod,
// OpenShift, dual-stack, IPv6-only), and the agent initializes each one on a simulated
// sandbox with the proxy identity Istio gave it.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { V1Container, V1Pod, V1Volume } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { runInNetns } from '../../controller/src/redirect/index.ts';
import { DEFAULT_NODE_CONFIG, planFromPod, renderPlan, rulesHash, validateNodeConfig, verifyRedirect } from '../../controller/src/redirect/index.ts';
import type { Family } from '../../controller/src/redirect/index.ts';
import { natRules } from '../../hack/lib/redirect-probe.ts';
import { ROOT } from '../cluster/deploy-support.ts';
import { pollUntil } from '../../hack/lib/poll.ts';
import { startController } from '../../hack/lib/controller-process.ts';
import type { ControllerProcess } from '../../hack/lib/controller-process.ts';
import { istioBinDir, kubeInject, registerInjector, renderIstiod, startInjector } from '../../hack/lib/istio-injector.ts';
import type { Injector, InstallRoute, RenderedIstiod } from '../../hack/lib/istio-injector.ts';
import type { MeshFixture, PodHandle } from '../../hack/lib/mesh-fixture.ts';
import { useMeshNode } from '../support/mesh-node.ts';
import type { MeshNode } from '../support/mesh-node.ts';
import { istioValidationArgs } from '../../hack/lib/mesh-pods.ts';

const notRoot = process.getuid?.() !== 0;
if (notRoot) console.warn('istio-injection e2e skipped: needs root (network namespaces, iptables, cgroups)');

const VALUES = 'manifests/injection/istio/istiod-values.yaml';
const OPERATOR = 'manifests/injection/istio/istio-operator.yaml';
const SCOPE_KEY = 'pnc-test.io/istio-injector';
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
// OpenShift gives each namespace a UID block; restricted-v2 runs apps at its first UID and
// Istio's injector runs the proxy (and istio-validation) at its last.
const OPENSHIFT_RANGE = { 'openshift.io/sa.scc.uid-range': '1000650000/10000', 'openshift.io/sa.scc.supplemental-groups': '1000650000/10000' };
const OPENSHIFT_APP_UID = 1000650000;
const OPENSHIFT_PROXY_UID = 1000659999;
const DUAL_STACK_VALUES = { pilot: { env: { ISTIO_DUAL_STACK: 'true' } }, meshConfig: { defaultConfig: { proxyMetadata: { ISTIO_DUAL_STACK: 'true' } } } };

interface Snippet {
  initContainer: V1Container;
  volume: V1Volume;
}

interface Instance {
  route: InstallRoute;
  files: string[];
  sets?: string[];
}

// One injector per istiod configuration, each with the environment its istiod Deployment sets.
const INSTANCES = {
  helm: { route: 'helm', files: [VALUES] },
  openshift: { route: 'helm', files: [VALUES], sets: ['global.platform=openshift'] },
  dualStack: { route: 'helm', files: [VALUES, 'DUAL_STACK'] },
  istioctl: { route: 'istioctl', files: [OPERATOR] },
  // The keys of the Helm values under spec.values, as the Helm values file's header once suggested.
  istioctlValuesOnly: { route: 'istioctl', files: ['VALUES_AS_OPERATOR'] },
} satisfies Record<string, Instance>;
type InstanceName = keyof typeof INSTANCES;

describe.skipIf(notRoot)("Istio's injector (istiod chart + pkg/kube/inject) with our values", () => {
  // The kubelet version is what the injector's native-sidecar detection reads.
  const k132 = useMeshNode('istio-k132');
  const k134 = useMeshNode('istio-k134');
  const ipv6Only = useMeshNode('istio-ipv6');
  const { kc, kubeconfig } = k134;
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const run = randomBytes(3).toString('hex');
  const cleanups: (() => Promise<unknown>)[] = [];
  const rendered = {} as Record<InstanceName, RenderedIstiod>;
  const agents = new Map<MeshNode, ControllerProcess>();
  let snippet: Snippet;
  let proxyImage = '';
  let binDir = '';

  const kebab = (instance: InstanceName) => instance.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  const scope = (instance: InstanceName) => `${kebab(instance)}-${run}`;

  beforeAll(async () => {
    snippet = parse(await readFile(join(ROOT, 'manifests/injection/init-waiter-snippet.yaml'), 'utf8')) as Snippet;
    [binDir] = await Promise.all([
      istioBinDir(),
      setKubeletVersion(k132.nodeName, 'v1.32.9'),
      setKubeletVersion(k134.nodeName, 'v1.34.4'),
      setKubeletVersion(ipv6Only.nodeName, 'v1.34.4'),
    ]);
    const scratch = await mkdtemp(join(tmpdir(), 'pnc-istio-inputs-'));
    cleanups.push(() => rm(scratch, { recursive: true, force: true }));
    const inputs: Record<string, string> = {
      DUAL_STACK: join(scratch, 'dual-stack.yaml'),
      VALUES_AS_OPERATOR: join(scratch, 'values-as-operator.yaml'),
    };
    await writeFile(inputs.DUAL_STACK!, stringify(DUAL_STACK_VALUES));
    const values: unknown = parse(await readFile(join(ROOT, VALUES), 'utf8'));
    await writeFile(inputs.VALUES_AS_OPERATOR!, stringify({ apiVersion: 'install.istio.io/v1alpha1', kind: 'IstioOperator', spec: { values } }));

    await Promise.all(
      (Object.entries(INSTANCES) as [InstanceName, Instance][]).map(async ([name, instance]) => {
        const files = instance.files.map((file) => inputs[file] ?? file);
        rendered[name] = await renderIstiod(binDir, instance.route, files, instance.sets);
        cleanups.push(() => rendered[name].remove());
        const injector: Injector = await startInjector(binDir, rendered[name], kubeconfig);
        cleanups.push(() => injector.stop());
        cleanups.push(await registerInjector(kc, rendered[name], injector, SCOPE_KEY, scope(name)));
      }),
    );
    const global = rendered.helm.values.global;
    proxyImage = `${global.hub}/${global.proxy.image}:${global.tag}`;

    for (const [node, env] of [
      [k132, {}],
      [k134, {}],
      [ipv6Only, { PNC_FAMILIES: 'ipv6' }],
    ] as const) {
      agents.set(node, await startController({ kubeconfig, nodeName: node.nodeName, env }));
    }
  });

  afterAll(async () => {
    await Promise.all([...agents.values()].map((agent) => agent.stop('SIGTERM')));
    for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => console.warn(`istio-injection cleanup: ${String(error)}`));
  });

  async function setKubeletVersion(nodeName: string, kubeletVersion: string): Promise<void> {
    await core.patchNodeStatus({ name: nodeName, body: { status: { nodeInfo: { kubeletVersion } } } }, mergePatch);
  }

  /** A namespace served by INSTANCE's injector (label istio-injection=enabled), once injection is in effect there. */
  async function injectedNamespace(
    fixture: MeshFixture,
    instance: InstanceName,
    annotations: Record<string, string> = {},
    probe?: (pod: V1Pod) => boolean,
  ): Promise<string> {
    const namespace = await fixture.namespace(`istio-${kebab(instance)}`, annotations);
    await core.patchNamespace({ name: namespace, body: { metadata: { labels: { 'istio-injection': 'enabled', [SCOPE_KEY]: scope(instance) } } } }, mergePatch);
    // The webhook, and the injector's view of this namespace, take effect a moment later.
    let last: V1Pod | undefined;
    await pollUntil(
      async () => {
        last = await core.createNamespacedPod({ namespace, body: appPod('probe', fixture.nodeName), dryRun: 'All' });
        return isInjected(last) && (probe?.(last) ?? true);
      },
      30_000,
      () => `namespace ${namespace}: ${instance} injection not in effect; last probe: ${JSON.stringify(last?.spec?.initContainers?.map((c) => c.name))}`,
      250,
    );
    return namespace;
  }

  interface Shape {
    native: boolean;
    uid: number;
    gid: number;
    appInitContainers?: string[];
    dualStack?: boolean;
  }

  /** Istio's exact pod shape with our template: istio-validation, [native istio-proxy], pnc-init-waiter, the app's. */
  function expectIstioShape(pod: V1Pod, shape: Shape): void {
    const init = pod.spec?.initContainers ?? [];
    expect(init.map((c) => c.name)).toEqual([
      'istio-validation',
      ...(shape.native ? ['istio-proxy'] : []),
      'pnc-init-waiter',
      ...(shape.appInitContainers ?? []),
    ]);
    expect(pod.spec?.containers.map((c) => c.name)).toEqual(shape.native ? ['app'] : ['app', 'istio-proxy']);

    const validation = init[0]!;
    expect(validation.image).toBe(proxyImage);
    expect(validation.command).toBeUndefined();
    expect(validation.args).toEqual(istioValidationArgs(shape.uid));
    expect(validation.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      privileged: false,
      readOnlyRootFilesystem: true,
      runAsGroup: shape.gid,
      runAsNonRoot: true,
      runAsUser: shape.uid,
    });
    expect(validation.restartPolicy).toBeUndefined();
    // ISTIO_DUAL_STACK reaches istio-iptables only through the proxy metadata.
    if (shape.dualStack) expect(validation.env).toContainEqual({ name: 'ISTIO_DUAL_STACK', value: 'true' });
    else expect(validation.env ?? []).not.toContainEqual(expect.objectContaining({ name: 'ISTIO_DUAL_STACK' }));

    const proxy = shape.native ? init[1]! : pod.spec!.containers[1]!;
    expect(proxy.image).toBe(proxyImage);
    expect(proxy.restartPolicy).toBe(shape.native ? 'Always' : undefined);
    expect(proxy.args?.slice(0, 2)).toEqual(['proxy', 'sidecar']);
    expect(proxy.securityContext).toMatchObject({
      runAsUser: shape.uid,
      runAsGroup: shape.gid,
      runAsNonRoot: true,
      privileged: false,
      allowPrivilegeEscalation: false,
    });

    expect(init.find((c) => c.name === 'pnc-init-waiter')).toEqual({ ...snippet.initContainer, args: ['--validate=false'] });
    expect(pod.spec?.volumes).toContainEqual(snippet.volume);
    // No Multus network for Istio's CNI: none is installed beside us.
    expect(pod.metadata?.annotations?.['k8s.v1.cni.cncf.io/networks']).toBeUndefined();
    expect(pod.metadata?.annotations?.['sidecar.istio.io/interceptionMode']).toBe('REDIRECT');
  }

  /** The agent on NODE initialized the pod with Istio's proxy identity: mark, verified rules, ::6 for IPv6. */
  async function expectInitialized(node: MeshNode, handle: PodHandle, uid: number, gid: number, families: Family[] = ['ipv4', 'ipv6']): Promise<void> {
    const mark = await node.fixture.waitForInitialized(handle);
    const plan = planFromPod(handle.pod, validateNodeConfig({ ...DEFAULT_NODE_CONFIG, families }), { uid, gid });
    expect(mark.rules).toBe(rulesHash(renderPlan(plan)));
    const { netnsPath } = handle.sandbox!;
    const verified = await verifyRedirect(netnsPath, plan);
    expect(verified.ok, `rules drift in ${netnsPath}:\n${verified.diff}`).toBe(true);
    if (families.includes('ipv6')) {
      const lo = await runInNetns(netnsPath, ['ip', '-6', 'addr', 'show', 'dev', 'lo']);
      expect(lo.stdout).toContain('inet6 ::6/128');
    }
    if (!families.includes('ipv4')) expect(await natRules(netnsPath)).not.toContain('ISTIO_');
  }

  it('Helm route: the rendered injector config enables istio-validation, adds our template, and installs no Istio CNI', () => {
    expect(rendered.helm.values.pilot.cni).toMatchObject({ enabled: true, provider: 'default' });
    expect(rendered.helm.objects.filter((o) => o.kind === 'DaemonSet')).toEqual([]);
  });

  it('classic sidecar (kubelet 1.32): istio-validation, waiter; istio-proxy a regular container; the agent initializes it', async () => {
    const namespace = await injectedNamespace(k132.fixture, 'helm');
    const handle = await k132.fixture.createPod(namespace, appPod('classic', k132.nodeName));
    expectIstioShape(handle.pod, { native: false, uid: 1337, gid: 1337 });
    await expectInitialized(k132, handle, 1337, 1337);
    // The pod's own annotation overrides the node's version.
    const asked = appPod('asks-native', k132.nodeName);
    asked.metadata!.annotations = { 'sidecar.istio.io/nativeSidecar': 'true' };
    expectIstioShape(await core.createNamespacedPod({ namespace, body: asked, dryRun: 'All' }), { native: true, uid: 1337, gid: 1337 });
  });

  it('native sidecar (kubelet 1.34): istio-validation, istio-proxy (restartPolicy Always), waiter; the agent initializes it', async () => {
    const namespace = await injectedNamespace(k134.fixture, 'helm');
    const handle = await k134.fixture.createPod(namespace, appPod('native', k134.nodeName));
    expectIstioShape(handle.pod, { native: true, uid: 1337, gid: 1337 });
    await expectInitialized(k134, handle, 1337, 1337);
  });

  it("keeps the app's own init containers last", async () => {
    const namespace = await injectedNamespace(k134.fixture, 'helm');
    const setup = { name: 'setup', image: 'registry.example/setup:1', securityContext: { runAsUser: 1000, runAsGroup: 1000 } };
    const handle = await k134.fixture.createPod(namespace, appPod('own-init', k134.nodeName, [setup]));
    expectIstioShape(handle.pod, { native: true, uid: 1337, gid: 1337, appInitContainers: ['setup'] });
    await expectInitialized(k134, handle, 1337, 1337);
  });

  it("a Deployment's pod, injected before scheduling: classic while any node's kubelet is older than 1.33; initialized once bound", async () => {
    const namespace = await injectedNamespace(k134.fixture, 'helm');
    const template = appPod('web', '');
    delete template.spec!.nodeName;
    const deployment = await apps.createNamespacedDeployment({
      namespace,
      body: { metadata: { name: 'web' }, spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: template.metadata, spec: template.spec } } },
    });
    // As the ReplicaSet controller makes it (this cluster runs none): generateName, owner, pod-template-hash.
    const hash = '7d9f8b6c5';
    const replicaSet = await apps.createNamespacedReplicaSet({
      namespace,
      body: {
        metadata: {
          name: `web-${hash}`,
          ownerReferences: [{ apiVersion: 'apps/v1', kind: 'Deployment', name: 'web', uid: deployment.metadata!.uid!, controller: true }],
        },
        spec: {
          selector: { matchLabels: { app: 'web', 'pod-template-hash': hash } },
          template: { metadata: { labels: { app: 'web', 'pod-template-hash': hash } }, spec: template.spec },
        },
      },
    });
    const pod: V1Pod = {
      metadata: {
        generateName: `web-${hash}-`,
        labels: { app: 'web', 'pod-template-hash': hash },
        ownerReferences: [
          {
            apiVersion: 'apps/v1',
            kind: 'ReplicaSet',
            name: replicaSet.metadata!.name!,
            uid: replicaSet.metadata!.uid!,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: template.spec,
    };
    const handle = await k134.fixture.createPod(namespace, pod, { sandbox: false });
    expectIstioShape(handle.pod, { native: false, uid: 1337, gid: 1337 });
    expect(handle.pod.metadata?.labels?.['service.istio.io/canonical-name']).toBe('web');
    await core.createNamespacedPodBinding({
      name: handle.name,
      namespace,
      body: { metadata: { name: handle.name }, target: { kind: 'Node', name: k134.nodeName } },
    });
    handle.pod = await k134.fixture.readPod(handle);
    await k134.fixture.addSandbox(handle);
    await expectInitialized(k134, handle, 1337, 1337);
  });

  it("OpenShift (platform openshift, a namespace's UID block): proxy and istio-validation run as the block's top UID; the agent programs that UID", async () => {
    const proxyAtTop = (pod: V1Pod) => pod.spec?.initContainers?.[0]?.securityContext?.runAsUser === OPENSHIFT_PROXY_UID;
    const namespace = await injectedNamespace(k134.fixture, 'openshift', OPENSHIFT_RANGE, proxyAtTop);
    const handle = await k134.fixture.createPod(namespace, appPod('openshift', k134.nodeName, [], OPENSHIFT_APP_UID));
    expectIstioShape(handle.pod, { native: true, uid: OPENSHIFT_PROXY_UID, gid: OPENSHIFT_PROXY_UID });
    await expectInitialized(k134, handle, OPENSHIFT_PROXY_UID, OPENSHIFT_PROXY_UID);
    expect(await natRules(handle.sandbox!.netnsPath)).toContain(`--uid-owner ${OPENSHIFT_PROXY_UID}`);
  });

  it('dual-stack (ISTIO_DUAL_STACK in istiod and the proxy metadata): the same shape with ISTIO_DUAL_STACK on istio-validation; both families programmed', async () => {
    expect(rendered.dualStack.env.ISTIO_DUAL_STACK).toBe('true');
    const namespace = await injectedNamespace(k134.fixture, 'dualStack');
    const handle = await k134.fixture.createPod(namespace, appPod('dual-stack', k134.nodeName));
    expectIstioShape(handle.pod, { native: true, uid: 1337, gid: 1337, dualStack: true });
    await expectInitialized(k134, handle, 1337, 1337, ['ipv4', 'ipv6']);
  });

  it('IPv6-only node (PNC_FAMILIES=ipv6): the same shape; only IPv6 rules, with ::6 on lo', async () => {
    const namespace = await injectedNamespace(ipv6Only.fixture, 'helm');
    const handle = await ipv6Only.fixture.createPod(namespace, appPod('ipv6-only', ipv6Only.nodeName));
    expectIstioShape(handle.pod, { native: true, uid: 1337, gid: 1337 });
    await expectInitialized(ipv6Only, handle, 1337, 1337, ['ipv6']);
  });

  it('istioctl route: the IstioOperator we ship (pilot.cni.enabled under unvalidatedValues) injects exactly what the Helm route does, and installs no Istio CNI', async () => {
    const operator = parse(await readFile(join(ROOT, OPERATOR), 'utf8'));
    const values = parse(await readFile(join(ROOT, VALUES), 'utf8'));
    expect(operator.spec.values.sidecarInjectorWebhook).toEqual(values.sidecarInjectorWebhook);
    expect(rendered.istioctl.values.pilot.cni).toMatchObject({ enabled: true, provider: 'default' });
    expect(rendered.istioctl.objects.filter((o) => o.kind === 'DaemonSet')).toEqual([]);
    // On OpenShift too: the platform's profile would set multus.
    const onOpenShift = await renderIstiod(binDir, 'istioctl', [OPERATOR], ['values.global.platform=openshift']);
    await onOpenShift.remove();
    expect(onOpenShift.values.pilot.cni).toMatchObject({ enabled: true, provider: 'default' });
    expect(onOpenShift.env.PLATFORM).toBe('openshift');

    const [viaHelm, viaIstioctl] = await Promise.all(
      (['helm', 'istioctl'] as const).map(async (instance) => {
        const namespace = await injectedNamespace(k134.fixture, instance);
        return core.createNamespacedPod({ namespace, body: appPod('same', k134.nodeName), dryRun: 'All' });
      }),
    );
    expectIstioShape(viaIstioctl!, { native: true, uid: 1337, gid: 1337 });
    // The proxy's ISTIO_META_OWNER names the pod's namespace; nothing else may differ.
    const spec = (pod: V1Pod) => JSON.parse(JSON.stringify(pod.spec).replaceAll(pod.metadata!.namespace!, 'NAMESPACE')) as V1Pod['spec'];
    expect(spec(viaIstioctl!)).toEqual(spec(viaHelm!));
  });

  it('istioctl kube-inject (offline) ignores defaultTemplates: no waiter unless the pod names the templates; with inject.istio.io/templates the agent initializes it', async () => {
    const plain = await kubeInject(binDir, rendered.helm, appPod('kube-inject-plain', k134.nodeName));
    expect(plain.spec?.initContainers?.map((c) => c.name)).toEqual(['istio-validation']);
    const named = appPod('kube-inject', k134.nodeName);
    named.metadata!.annotations = { 'inject.istio.io/templates': 'sidecar,pnc-init-waiter' };
    const injected = await kubeInject(binDir, rendered.helm, named);
    // Offline it knows no node: classic sidecar unless ENABLE_NATIVE_SIDECARS=true.
    expectIstioShape(injected, { native: false, uid: 1337, gid: 1337 });
    // Applied as it is, in a namespace without webhook injection.
    const namespace = await k134.fixture.namespace('istio-kube-inject');
    const handle = await k134.fixture.createPod(namespace, injected);
    expectIstioShape(handle.pod, { native: false, uid: 1337, gid: 1337 });
    await expectInitialized(k134, handle, 1337, 1337);
  });

  it("istioctl kube-inject with cluster access sends the pod to the cluster's webhook, which applies defaultTemplates", async () => {
    // istioctl picks the first webhook configuration labelled istio.io/rev=default: one of this file's injectors.
    const injected = await kubeInject(binDir, rendered.helm, appPod('kube-inject-online', k134.nodeName), kubeconfig);
    expect(injected.spec?.initContainers?.map((c) => c.name)).toEqual(['istio-validation', 'istio-proxy', 'pnc-init-waiter']);
  });

  it('istioctl route with the Helm keys under spec.values: istioctl forces pilot.cni.enabled off, so pods get root istio-init with NET_ADMIN', async () => {
    expect(rendered.istioctlValuesOnly.values.pilot.cni.enabled).toBe(false);
    const namespace = await injectedNamespace(k134.fixture, 'istioctlValuesOnly');
    const pod = await core.createNamespacedPod({ namespace, body: appPod('forced', k134.nodeName), dryRun: 'All' });
    const init = pod.spec?.initContainers ?? [];
    expect(init.map((c) => c.name)).toEqual(['istio-init', 'istio-proxy', 'pnc-init-waiter']);
    expect(init[0]!.securityContext).toMatchObject({ runAsUser: 0, runAsNonRoot: false, capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] } });
  });
});

function appPod(name: string, nodeName: string, initContainers: V1Container[] = [], uid = 1000): V1Pod {
  return {
    metadata: { name, labels: { app: name } },
    spec: {
      nodeName,
      automountServiceAccountToken: false,
      ...(initContainers.length > 0 ? { initContainers } : {}),
      containers: [{ name: 'app', image: 'registry.example/app:1', securityContext: { runAsUser: uid, runAsGroup: uid } }],
    },
  };
}

function isInjected(pod: V1Pod): boolean {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].some((c) => c.name === 'istio-proxy');
}
