// Assertions about a pod's network namespace after the controller handled the pod:
// the engine's own verification, exactly one copy of our jumps, and where real TCP
// connections land. Shared by the controller's end-to-end test files.
import { expect } from 'vitest';
import { type IptablesMode, planFromPod, renderPlan, rulesHash, verifyRedirect } from '../../controller/src/redirect/index.ts';
import type { Mark } from '../../controller/src/pod-contract/index.ts';
import { connectFrom, startListeners } from '../../hack/lib/netns.ts';
import { jumpRuleCounts, noRedirectRules } from '../../hack/lib/redirect-probe.ts';
import type { PodHandle } from '../../hack/lib/mesh-fixture.ts';
import { APP_UID, PROXY_UID } from '../../hack/lib/mesh-pods.ts';

const OUTBOUND_CAPTURE_PORT = 15001;
/** A port the peer ("remote host") listens on; the app's connection to it must reach the proxy instead. */
const REMOTE_PORT = 8080;

function sandboxOf(handle: PodHandle) {
  if (!handle.sandbox) throw new Error(`pod ${handle.namespace}/${handle.name} has no sandbox`);
  return handle.sandbox;
}

/** The mark names the current sandbox and the hash of the rules the engine plans for the pod. */
export function expectMarkMatchesSandbox(handle: PodHandle, mark: Mark): void {
  expect(mark.state).toBe('initialized');
  expect(mark.netns).toBe(sandboxOf(handle).netnsInode);
  expect(mark.rules).toBe(rulesHash(renderPlan(planFromPod(handle.pod))));
  expect(Number.isNaN(Date.parse(mark.at))).toBe(false);
}

/** Exactly one PREROUTING and one OUTPUT jump per address family, all in one backend. */
export async function expectOneCopyOfRules(netnsPath: string): Promise<void> {
  const counts = await jumpRuleCounts(netnsPath);
  const byFamily = (prefix: string) => counts.filter((c) => c.tool.startsWith(prefix));
  for (const family of [byFamily('iptables-'), byFamily('ip6tables-')]) {
    const total = family.reduce((sum, c) => ({ inbound: sum.inbound + c.inbound, outbound: sum.outbound + c.outbound }), { inbound: 0, outbound: 0 });
    expect(total, JSON.stringify(counts)).toEqual({ inbound: 1, outbound: 1 });
  }
}

/** The engine verifies the pod's plan in its netns (`mode`: the agent's, when not the host's default), and we hold exactly one copy of the jumps. */
export async function expectRulesInPlace(handle: PodHandle, mode?: IptablesMode): Promise<void> {
  const { netnsPath } = sandboxOf(handle);
  const verified = await verifyRedirect(netnsPath, planFromPod(handle.pod), { mode });
  expect(verified.ok, `rules drift in ${netnsPath}:\n${verified.diff}`).toBe(true);
  await expectOneCopyOfRules(netnsPath);
}

/**
 * Real traffic: the app's (UID 1000) connection to the remote peer lands on the proxy's
 * outbound port inside the pod; the proxy's own (UID 1337) connection reaches the peer.
 */
export async function expectTrafficRedirected(handle: PodHandle): Promise<void> {
  const sandbox = sandboxOf(handle);
  const proxy = await startListeners(sandbox.netnsPath, 'proxy', [OUTBOUND_CAPTURE_PORT]);
  const remote = await startListeners(sandbox.peerNetnsPath, 'remote', [REMOTE_PORT]);
  try {
    for (const peerIP of sandbox.peerIPs) {
      expect(await connectFrom(sandbox.netnsPath, peerIP, REMOTE_PORT, APP_UID), `app -> ${peerIP}`).toBe(`proxy:${OUTBOUND_CAPTURE_PORT}`);
      expect(await connectFrom(sandbox.netnsPath, peerIP, REMOTE_PORT, PROXY_UID), `proxy -> ${peerIP}`).toBe(`remote:${REMOTE_PORT}`);
    }
  } finally {
    proxy.stop();
    remote.stop();
  }
}

/** No ISTIO_* chain (any table) and no jump of ours in any backend of either family. */
export async function expectNoRedirectRules(netnsPath: string): Promise<void> {
  const counts = await jumpRuleCounts(netnsPath);
  expect(noRedirectRules(counts), JSON.stringify(counts)).toBe(true);
}

/** No ISTIO_* chain and no jump of ours in any backend, and the app reaches the peer directly. */
export async function expectUntouched(handle: PodHandle): Promise<void> {
  const sandbox = sandboxOf(handle);
  await expectNoRedirectRules(sandbox.netnsPath);
  const remote = await startListeners(sandbox.peerNetnsPath, 'remote', [REMOTE_PORT]);
  try {
    expect(await connectFrom(sandbox.netnsPath, sandbox.peerIPs[0]!, REMOTE_PORT, APP_UID)).toBe(`remote:${REMOTE_PORT}`);
  } finally {
    remote.stop();
  }
}
