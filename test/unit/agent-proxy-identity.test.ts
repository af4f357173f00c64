import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { SUPPLEMENTAL_GROUPS_ANNOTATION, UID_RANGE_ANNOTATION, decideProxyIdentity, namespaceProxyIds } from '../../controller/src/agent/proxy-identity.ts';

const node = { uid: 1337, gid: 1337 };
const openshift = { [UID_RANGE_ANNOTATION]: '1000650000/10000', [SUPPLEMENTAL_GROUPS_ANNOTATION]: '1000650000/10000' };

function pod(proxy: Partial<V1Container> & { native?: boolean }, podContext?: { runAsUser?: number; runAsGroup?: number }): V1Pod {
  const { native, ...rest } = proxy;
  const container: V1Container = { name: 'istio-proxy', image: 'hub/proxyv2:1', ...rest };
  return {
    metadata: { name: 'p', namespace: 'shop' },
    spec: {
      ...(podContext ? { securityContext: podContext } : {}),
      containers: native ? [{ name: 'app' }] : [{ name: 'app' }, container],
      ...(native ? { initContainers: [{ ...container, restartPolicy: 'Always' }] } : {}),
    },
  };
}

const as = (runAsUser?: number, runAsGroup?: number) => ({ securityContext: { runAsUser, runAsGroup } });
const decide = (p: V1Pod, annotations: Record<string, string> | undefined = {}) => decideProxyIdentity(p, 'istio-proxy', { name: 'shop', annotations }, node);

describe('namespaceProxyIds: Istio injector rule (GetProxyIDs) on OpenShift namespace annotations', () => {
  it('takes the end of "start/size" and of "start-end"', () => {
    expect(namespaceProxyIds({ [UID_RANGE_ANNOTATION]: '1000650000/10000' }).uid?.value).toBe(1000659999);
    expect(namespaceProxyIds({ [UID_RANGE_ANNOTATION]: '1000650000-1000659999' }).uid?.value).toBe(1000659999);
  });

  it('takes the first range of a list, as Istio does (groups[0].Max)', () => {
    const ids = namespaceProxyIds({ [UID_RANGE_ANNOTATION]: '1000650000/10000', [SUPPLEMENTAL_GROUPS_ANNOTATION]: '2000/10,5000-5999' });
    expect(ids.uid?.value).toBe(1000659999);
    expect(ids.gid?.value).toBe(2009);
    expect(namespaceProxyIds({ [UID_RANGE_ANNOTATION]: '3000/10,1000650000/10000' }).uid?.value).toBe(3009);
  });

  it('falls back to the UID range for the group when supplemental-groups is absent', () => {
    const ids = namespaceProxyIds({ [UID_RANGE_ANNOTATION]: '1000650000/10000' });
    expect(ids.gid).toEqual({ value: 1000659999, from: `${UID_RANGE_ANNOTATION} "1000650000/10000"` });
  });

  it('does not fall back when supplemental-groups is present but malformed or empty', () => {
    expect(namespaceProxyIds({ [UID_RANGE_ANNOTATION]: '1000650000/10000', [SUPPLEMENTAL_GROUPS_ANNOTATION]: '' }).gid).toBeUndefined();
    expect(namespaceProxyIds({ [UID_RANGE_ANNOTATION]: '1000650000/10000', [SUPPLEMENTAL_GROUPS_ANNOTATION]: 'x' }).gid).toBeUndefined();
  });

  it('yields nothing for a plain namespace, an unknown one, or malformed ranges (fail closed)', () => {
    expect(namespaceProxyIds({})).toEqual({});
    expect(namespaceProxyIds(undefined)).toEqual({});
    for (const bad of [
      '',
      '1000650000',
      '1000650000/0',
      '10-5',
      '0-0',
      '-5/10',
      '1/2/3',
      '4294967290/100',
      'abc/10',
      '1000650000/10000,garbage',
      '99999999999/1',
    ]) {
      expect(namespaceProxyIds({ [UID_RANGE_ANNOTATION]: bad }), bad).toEqual({});
    }
  });
});

describe('decideProxyIdentity', () => {
  it("accepts the node's identity, from the proxy container or from the pod", () => {
    expect(decide(pod(as(1337, 1337)))).toEqual({ ok: true, identity: { uid: 1337, gid: 1337 } });
    expect(decide(pod({}, { runAsUser: 1337, runAsGroup: 1337 }))).toEqual({ ok: true, identity: { uid: 1337, gid: 1337 } });
  });

  it("takes an unset runAsUser/runAsGroup as the node's identity (the proxy image's USER)", () => {
    expect(decide(pod({}))).toEqual({ ok: true, identity: { uid: 1337, gid: 1337 } });
    expect(decide(pod(as(1000659999)), openshift)).toEqual({ ok: true, identity: { uid: 1000659999, gid: 1337 } });
  });

  it("prefers the container's securityContext over the pod's", () => {
    expect(decide(pod(as(1337, 1337), { runAsUser: 5, runAsGroup: 5 }))).toEqual({ ok: true, identity: { uid: 1337, gid: 1337 } });
    expect(decide(pod(as(undefined, 1337), { runAsUser: 5 })).ok).toBe(false);
  });

  it("accepts the top of an OpenShift namespace's ranges, for a regular or a native-sidecar proxy", () => {
    for (const native of [false, true]) {
      expect(decide(pod({ ...as(1000659999, 1000659999), native }), openshift)).toEqual({ ok: true, identity: { uid: 1000659999, gid: 1000659999 } });
    }
    // The node's identity stays accepted there too (e.g. a pod admitted under nonroot-v2).
    expect(decide(pod(as(1337, 1337)), openshift).ok).toBe(true);
  });

  it('refuses any other identity, naming the container, the value and what was expected', () => {
    const wrong = decide(pod(as(1000650000, 1000659999)), openshift);
    expect(wrong.ok).toBe(false);
    if (wrong.ok) return;
    expect(wrong.reason).toContain('proxy container "istio-proxy"');
    expect(wrong.reason).toContain('runAsUser=1000650000');
    expect(wrong.reason).toContain(
      'expected 1337 (the node\'s proxy UID) or 1000659999 (the top of namespace "shop"\'s openshift.io/sa.scc.uid-range "1000650000/10000")',
    );
    expect(wrong.reason).not.toContain('runAsGroup');
  });

  it('refuses the OpenShift values outside an OpenShift namespace, root, and names both fields when both are wrong', () => {
    const plain = decide(pod(as(1000659999, 1000659999)));
    expect(plain.ok).toBe(false);
    expect(plain).toMatchObject({
      reason: expect.stringMatching(/runAsUser=1000659999, expected 1337 \(the node's proxy UID\) and runAsGroup=1000659999, expected 1337/),
    });
    expect(decide(pod(as(0, 1337))).ok).toBe(false);
  });

  it('follows a node configured with another proxy identity', () => {
    const p = pod(as(2000, 2000));
    expect(decideProxyIdentity(p, 'istio-proxy', { name: 'shop', annotations: {} }, { uid: 2000, gid: 2000 }).ok).toBe(true);
    expect(decide(p).ok).toBe(false);
  });

  it('refuses a pod without the proxy container', () => {
    expect(decideProxyIdentity(pod({}), 'envoy', { name: 'shop', annotations: {} }, node)).toEqual({ ok: false, reason: 'no container "envoy"' });
  });
});
