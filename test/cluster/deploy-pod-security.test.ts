// Pod Security "restricted" on the real API server: a mesh pod with the injected
// init-waiter, a stand-in proxy (UID 1337) and an app is admitted; a pod asking for
// NET_ADMIN (what an istio-init container needs) is rejected by PodSecurity itself.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoreV1Api, type V1Container, type V1Pod, type V1Volume } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { adminKubeConfig, freshNamespace } from '../support/cluster.ts';
import { ROOT, apiFailure, apiOnlyPod } from './deploy-support.ts';

const admin = adminKubeConfig();
const core = admin.makeApiClient(CoreV1Api);
const restricted = { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };
let namespace: string;
let injected: V1Pod;

beforeAll(async () => {
  namespace = await freshNamespace(admin, { 'pod-security.kubernetes.io/enforce': 'restricted' });
  const snippet = parse(await readFile(join(ROOT, 'manifests/injection/init-waiter-snippet.yaml'), 'utf8')) as {
    initContainer: V1Container;
    volume: V1Volume;
  };
  injected = apiOnlyPod('mesh', {
    securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
    initContainers: [snippet.initContainer],
    volumes: [snippet.volume],
    containers: [
      { name: 'app', image: 'example.invalid/app:1', securityContext: { ...restricted, runAsUser: 1000 } },
      { name: 'istio-proxy', image: 'example.invalid/proxy:1', securityContext: { ...restricted, runAsUser: 1337, runAsGroup: 1337 } },
    ],
  });
});

describe('a namespace enforcing Pod Security restricted', () => {
  it('admits a mesh pod with the injected init-waiter, a proxy as UID 1337 and an app', async () => {
    const created = await core.createNamespacedPod({ namespace, body: injected });
    expect(created.spec?.initContainers?.map((c) => c.name)).toEqual(['pnc-init-waiter']);
    expect(created.metadata?.uid).toBeTruthy();
  });

  it('rejects a pod whose init container asks for NET_ADMIN, with the PodSecurity message', async () => {
    const istioInit: V1Container = {
      name: 'istio-init',
      image: 'example.invalid/proxy:1',
      securityContext: { allowPrivilegeEscalation: false, runAsUser: 0, runAsNonRoot: false, capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'NET_RAW'] } },
    };
    const pod = structuredClone(injected);
    pod.metadata!.name = 'with-net-admin';
    pod.spec!.initContainers = [istioInit];
    const failure = await apiFailure(core.createNamespacedPod({ namespace, body: pod }));
    expect(failure.code).toBe(403);
    expect(failure.message).toContain('violates PodSecurity "restricted:latest"');
    expect(failure.message).toMatch(/unrestricted capabilities \(container "istio-init" must not include "NET_ADMIN", "NET_RAW"/);
  });
});
