// The pod's own proxy identity on a real control plane with simulated sandboxes: in
// OpenShift-annotated namespaces the proxy runs as the top of the namespace's UID range
// (Istio's injector rule) and gets rules for that UID/GID; any other identity is refused.
// Istio's own istio-validation init container, as Istio's injector writes it, runs as the
// proxy and is let through; a container that only borrows its name is refused.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUPPLEMENTAL_GROUPS_ANNOTATION, UID_RANGE_ANNOTATION } from '../../controller/src/agent/proxy-identity.ts';
import { planFromPod, renderPlan, rulesHash, verifyRedirect } from '../../controller/src/redirect/index.ts';
import { connectFrom, startListeners } from '../../hack/lib/netns.ts';
import { natRules } from '../../hack/lib/redirect-probe.ts';
import { startController } from '../../hack/lib/controller-process.ts';
import type { ControllerProcess } from '../../hack/lib/controller-process.ts';
import type { PodHandle } from '../../hack/lib/mesh-fixture.ts';
import { useMeshNode } from '../support/mesh-node.ts';
import { PROXY_CONTAINER, WAITER_CONTAINER, istioValidationContainer, meshPod } from '../../hack/lib/mesh-pods.ts';
import { expectNoRedirectRules, expectOneCopyOfRules } from '../support/redirect-assertions.ts';

const notRoot = process.getuid?.() !== 0;
if (notRoot) console.warn('controller-proxy-identity e2e skipped: needs root (network namespaces, iptables, cgroups)');

const PROXY_IMAGE = 'registry.example/istio/proxyv2:1.28.0';
/** What OpenShift writes on a new project; Istio's injector gives the proxy the top: 1000659999. */
const SLASH_RANGE = '1000650000/10000';
const SLASH_TOP = 1000659999;
/** The other spelling, with its own supplemental groups (first range counts: gid 5099). */
const DASH_RANGE = '1000700000-1000709999';
const DASH_TOP = 1000709999;
const GROUPS = '5000/100,6000/100';
const GROUPS_TOP = 5099;
const REMOTE_PORT = 8080;

function restricted(uid: number, gid: number): V1Container['securityContext'] {
  return { runAsUser: uid, runAsGroup: gid, runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };
}

/** A mesh pod whose proxy, app and waiter run as the given identities. */
function podAs(name: string, nodeName: string, proxy: { uid: number; gid: number }, appUid: number): V1Pod {
  const pod = meshPod(name, nodeName, { appUid });
  const proxyContainer = pod.spec!.containers.find((c) => c.name === PROXY_CONTAINER)!;
  proxyContainer.image = PROXY_IMAGE;
  proxyContainer.securityContext = restricted(proxy.uid, proxy.gid);
  pod.spec!.initContainers![0]!.securityContext = restricted(appUid, appUid);
  return pod;
}

/**
 * The pod shape Istio's injector makes with our template: istio-validation first, then
 * (native sidecars) the istio-proxy with restartPolicy Always, then pnc-init-waiter
 * with --validate=false.
 */
function istioShapedPod(
  name: string,
  nodeName: string,
  options: { uid: number; gid: number; appUid: number; native: boolean; validationImage?: string },
): V1Pod {
  const pod = podAs(name, nodeName, options, options.appUid);
  const waiter = pod.spec!.initContainers![0]!;
  waiter.args = ['--validate=false'];
  const validation = istioValidationContainer(options.uid, options.gid, options.validationImage ?? PROXY_IMAGE);
  if (options.native) {
    const proxy = pod.spec!.containers.find((c) => c.name === PROXY_CONTAINER)!;
    pod.spec!.containers = pod.spec!.containers.filter((c) => c !== proxy);
    pod.spec!.initContainers = [validation, { ...proxy, restartPolicy: 'Always' }, waiter];
  } else {
    pod.spec!.initContainers = [validation, waiter];
  }
  return pod;
}

/** The mark names the sandbox and the rules planned for this identity; those rules are read back in the pod's netns. */
async function expectInitializedFor(fixture: ReturnType<typeof useMeshNode>['fixture'], handle: PodHandle, uid: number, gid: number): Promise<void> {
  const mark = await fixture.waitForInitialized(handle);
  const plan = planFromPod(handle.pod, undefined, { uid, gid });
  expect(mark.rules).toBe(rulesHash(renderPlan(plan)));
  const { netnsPath } = handle.sandbox!;
  const verified = await verifyRedirect(netnsPath, plan);
  expect(verified.ok, `rules drift in ${netnsPath}:\n${verified.diff}`).toBe(true);
  await expectOneCopyOfRules(netnsPath);
  // Read back the raw rules: the owner exemptions name this identity, never the default 1337.
  const rules = await natRules(netnsPath);
  expect(rules).toContain(`--uid-owner ${uid}`);
  expect(rules).toContain(`--gid-owner ${gid}`);
  if (uid !== 1337) expect(rules).not.toMatch(/--(uid|gid)-owner 1337\b/);
}

/** Real connections: the app's is captured by the proxy port, the proxy identity's reaches the peer. */
async function expectProxyExempt(handle: PodHandle, proxyUid: number, appUid: number): Promise<void> {
  const sandbox = handle.sandbox!;
  const proxy = await startListeners(sandbox.netnsPath, 'proxy', [15001]);
  const remote = await startListeners(sandbox.peerNetnsPath, 'remote', [REMOTE_PORT]);
  try {
    const peer = sandbox.peerIPs[0]!;
    expect(await connectFrom(sandbox.netnsPath, peer, REMOTE_PORT, appUid), `app ${appUid} -> ${peer}`).toBe('proxy:15001');
    expect(await connectFrom(sandbox.netnsPath, peer, REMOTE_PORT, proxyUid), `proxy ${proxyUid} -> ${peer}`).toBe(`remote:${REMOTE_PORT}`);
    // 1337 is an ordinary app identity in this pod: captured like any other.
    if (proxyUid !== 1337) expect(await connectFrom(sandbox.netnsPath, peer, REMOTE_PORT, 1337), `1337 -> ${peer}`).toBe('proxy:15001');
  } finally {
    proxy.stop();
    remote.stop();
  }
}

async function expectRefused(fixture: ReturnType<typeof useMeshNode>['fixture'], handle: PodHandle, ...reasonParts: string[]): Promise<void> {
  const mark = await fixture.waitForMark(handle, (m) => m.state === 'error');
  for (const part of reasonParts) expect(mark.reason).toContain(part);
  const event = await fixture.waitForEvent(handle, 'ProxyIdentityRefused');
  expect(event.type).toBe('Warning');
  expect(event.note).toBe(mark.reason);
  await expectNoRedirectRules(handle.sandbox!.netnsPath);
}

describe.skipIf(notRoot)('controller on a real control plane: per-pod proxy identity and istio-validation', () => {
  const mesh = useMeshNode('e2e-pid');
  const { kubeconfig, nodeName, fixture } = mesh;
  let controller: ControllerProcess | undefined;
  let plainNs = '';
  let slashNs = '';
  let dashNs = '';

  beforeAll(async () => {
    controller = await startController({ kubeconfig, nodeName });
    // Created after the agent started: its namespace watch must deliver the ranges.
    [plainNs, slashNs, dashNs] = await Promise.all([
      fixture.namespace('e2e-pid-plain'),
      fixture.namespace('e2e-pid-os', { [UID_RANGE_ANNOTATION]: SLASH_RANGE, [SUPPLEMENTAL_GROUPS_ANNOTATION]: SLASH_RANGE }),
      fixture.namespace('e2e-pid-os-dash', { [UID_RANGE_ANNOTATION]: DASH_RANGE, [SUPPLEMENTAL_GROUPS_ANNOTATION]: GROUPS }),
    ]);
  });

  afterAll(async () => {
    await controller?.stop('SIGTERM');
  });

  it('initializes a pod whose proxy runs as the top of its namespace UID range, with rules for that UID/GID', async () => {
    const [slash, dash] = await Promise.all([
      fixture.createPod(slashNs, podAs('range-top', nodeName, { uid: SLASH_TOP, gid: SLASH_TOP }, 1000650000)),
      fixture.createPod(dashNs, podAs('range-top-dash', nodeName, { uid: DASH_TOP, gid: GROUPS_TOP }, 1000700000)),
    ]);
    await expectInitializedFor(fixture, slash, SLASH_TOP, SLASH_TOP);
    await expectInitializedFor(fixture, dash, DASH_TOP, GROUPS_TOP);
    await expectProxyExempt(slash, SLASH_TOP, 1000650000);
  });

  it('refuses a proxy running as another UID of the range, or as the range top outside OpenShift namespaces', async () => {
    const [inRange, plain] = await Promise.all([
      fixture.createPod(slashNs, podAs('range-bottom', nodeName, { uid: 1000650000, gid: SLASH_TOP }, 1000650001)),
      fixture.createPod(plainNs, podAs('top-elsewhere', nodeName, { uid: SLASH_TOP, gid: SLASH_TOP }, 1000)),
    ]);
    await expectRefused(
      fixture,
      inRange,
      'proxy container "istio-proxy"',
      'runAsUser=1000650000',
      `expected 1337 (the node's proxy UID) or ${SLASH_TOP}`,
      SLASH_RANGE,
    );
    await expectRefused(fixture, plain, `runAsUser=${SLASH_TOP}, expected 1337`, `runAsGroup=${SLASH_TOP}, expected 1337`);
  });

  it("initializes Istio-shaped pods: istio-validation (the proxy's identity) before pnc-init-waiter, classic and native sidecar", async () => {
    const [classic, native] = await Promise.all([
      fixture.createPod(plainNs, istioShapedPod('istio-classic', nodeName, { uid: 1337, gid: 1337, appUid: 1000, native: false })),
      fixture.createPod(slashNs, istioShapedPod('istio-native-os', nodeName, { uid: SLASH_TOP, gid: SLASH_TOP, appUid: 1000650000, native: true })),
    ]);
    expect(classic.pod.spec!.initContainers!.map((c) => c.name)).toEqual(['istio-validation', WAITER_CONTAINER]);
    expect(native.pod.spec!.initContainers!.map((c) => c.name)).toEqual(['istio-validation', PROXY_CONTAINER, WAITER_CONTAINER]);
    await expectInitializedFor(fixture, classic, 1337, 1337);
    await expectInitializedFor(fixture, native, SLASH_TOP, SLASH_TOP);
    await expectProxyExempt(classic, 1337, 1000);
    await expectProxyExempt(native, SLASH_TOP, 1000650000);
  });

  it("refuses a fake istio-validation (another image) running as the proxy, naming why it is not Istio's", async () => {
    const fake = await fixture.createPod(
      plainNs,
      istioShapedPod('fake-validation', nodeName, { uid: 1337, gid: 1337, appUid: 1000, native: false, validationImage: 'registry.example/not-istio:1' }),
    );
    await expectRefused(fixture, fake, 'container "istio-validation" runAsUser=1337', "not Istio's validation container", 'registry.example/not-istio:1');
  });
});
