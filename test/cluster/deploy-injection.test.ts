// Injection of the init-waiter by the MutatingAdmissionPolicy (manifests/injection/
// admission-policy) on the real API server: the pod read back has exactly the shape
// documented in manifests/injection/init-waiter-snippet.yaml, which the Istio
// template override (manifests/injection/istio) adds too.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoreV1Api, type V1Container, type V1Pod, type V1Volume } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { adminKubeConfig, freshNamespace, servesMutatingAdmissionPolicyV1 } from '../support/cluster.ts';
import {
  ROOT,
  SCOPE_LABEL,
  apiOnlyPod,
  ensureControllerNamespace,
  eventually,
  findManifest,
  install,
  kubectl,
  kustomize,
  scopedToRun,
} from './deploy-support.ts';

interface Snippet {
  initContainer: V1Container;
  volume: V1Volume;
}

const run = randomBytes(3).toString('hex');
const admin = adminKubeConfig();
const core = admin.makeApiClient(CoreV1Api);
const cleanups: (() => Promise<unknown>)[] = [];
const INJECT_LABELS = { 'pod-network-controller.io/inject': 'enabled', [SCOPE_LABEL]: run, 'pod-security.kubernetes.io/enforce': 'restricted' };
let snippet: Snippet;
let waiterImage: string;
let namespace: string;

// Restricted-compatible app and stand-in proxy (the proxy runs as Istio's UID 1337).
const restricted = { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };
const app: V1Container = { name: 'app', image: 'example.invalid/app:1', securityContext: { ...restricted, runAsUser: 1000 } };
const proxy: V1Container = { name: 'istio-proxy', image: 'example.invalid/proxy:1', securityContext: { ...restricted, runAsUser: 1337, runAsGroup: 1337 } };
const podSecurity = { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } };

function meshPod(name: string, spec: Partial<V1Pod['spec']> = {}): V1Pod {
  return apiOnlyPod(name, { securityContext: podSecurity, containers: [app, proxy], ...spec });
}

async function createAndReadBack(pod: V1Pod, inNamespace = namespace): Promise<V1Pod> {
  await core.createNamespacedPod({ namespace: inNamespace, body: pod });
  return core.readNamespacedPod({ name: pod.metadata!.name!, namespace: inNamespace });
}

const expectedWaiter = () => ({ ...snippet.initContainer, image: waiterImage });
// Kubernetes 1.35, the oldest release we support, does not serve it: there the docs send users
// to Istio's injector or the snippet by hand, and applying the injection must say why it fails.
const served = await servesMutatingAdmissionPolicyV1(admin);

// Each release runs the half that applies to it (CI runs both: 1.37, then 1.35); the other is not registered.
if (!served)
  describe('the injection on an API server without MutatingAdmissionPolicy v1', () => {
    it('is refused by the API server, naming the kind and version it does not serve', async () => {
      const applied = await kubectl(['apply', '--server-side', '--dry-run=server', '-k', join(ROOT, 'manifests/injection/admission-policy')]);
      expect(applied.code).not.toBe(0);
      expect(applied.stderr).toMatch(/no matches for kind "MutatingAdmissionPolicy" in version "admissionregistration\.k8s\.io\/v1"/);
    });
  });

beforeAll(async () => {
  snippet = parse(await readFile(join(ROOT, 'manifests/injection/init-waiter-snippet.yaml'), 'utf8')) as Snippet;
  if (!served) return;
  await ensureControllerNamespace(admin);
  const objects = await kustomize('manifests/injection/admission-policy');
  const parameters = findManifest(objects, 'ConfigMap', 'pod-network-controller-injection');
  waiterImage = parameters.data.image;
  // One release, one image: the policy's parameter and the documented snippet name the same one.
  expect(waiterImage).toBe(snippet.initContainer.image);
  cleanups.push(await install(admin, [parameters, ...scopedToRun(objects, run)]));
  namespace = await freshNamespace(admin, INJECT_LABELS);
  // A policy takes effect a moment after it is created: wait until a dry-run pod is injected.
  await eventually('the MutatingAdmissionPolicy to take effect', async () => {
    const probe = await core.createNamespacedPod({ namespace, body: meshPod('probe'), dryRun: 'All' });
    return probe.spec?.initContainers?.[0]?.name === 'pnc-init-waiter';
  });
});

afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
});

if (served)
  describe('the MutatingAdmissionPolicy', () => {
    it('gives a mesh pod exactly the documented init container and volume, admitted under Pod Security restricted', async () => {
      const pod = await createAndReadBack(meshPod('plain-mesh'));
      expect(pod.spec?.initContainers).toEqual([expectedWaiter()]);
      expect(pod.spec?.volumes).toEqual([snippet.volume]);
      expect(pod.spec?.containers.map((c) => c.name)).toEqual(['app', 'istio-proxy']);
    });

    it('puts the waiter first among existing init containers and appends its volume', async () => {
      const setup: V1Container = { name: 'setup', image: 'example.invalid/setup:1', securityContext: { ...restricted, runAsUser: 1000 } };
      const data: V1Volume = { name: 'data', emptyDir: {} };
      const pod = await createAndReadBack(meshPod('with-init', { initContainers: [setup], volumes: [data] }));
      expect(pod.spec?.initContainers?.map((c) => c.name)).toEqual(['pnc-init-waiter', 'setup']);
      expect(pod.spec?.initContainers?.[0]).toEqual(expectedWaiter());
      expect(pod.spec?.volumes?.map((v) => v.name)).toEqual(['data', 'pnc-podinfo']);
    });

    it('injects before a native-sidecar istio-proxy, so the proxy starts only after redirection', async () => {
      const pod = await createAndReadBack(meshPod('native-sidecar', { containers: [app], initContainers: [{ ...proxy, restartPolicy: 'Always' }] }));
      expect(pod.spec?.initContainers?.map((c) => c.name)).toEqual(['pnc-init-waiter', 'istio-proxy']);
    });

    it("tells the waiter a Job pod's restartPolicy Never (a failed init container would fail the pod for good)", async () => {
      const pod = await createAndReadBack(meshPod('job', { restartPolicy: 'Never' }));
      expect(pod.spec?.initContainers).toEqual([{ ...expectedWaiter(), env: [{ name: 'PNC_WAITER_RESTART_POLICY', value: 'Never' }] }]);
    });

    it('leaves a pod without istio-proxy alone', async () => {
      const pod = await createAndReadBack(apiOnlyPod('no-proxy', { securityContext: podSecurity, containers: [app] }));
      expect(pod.spec?.initContainers).toBeUndefined();
      expect(pod.spec?.volumes).toBeUndefined();
    });

    it('does not inject a second waiter', async () => {
      const pod = await createAndReadBack(meshPod('already', { initContainers: [expectedWaiter()], volumes: [snippet.volume] }));
      expect(pod.spec?.initContainers?.map((c) => c.name)).toEqual(['pnc-init-waiter']);
      expect(pod.spec?.volumes?.map((v) => v.name)).toEqual(['pnc-podinfo']);
    });

    it("takes the waiter's CPU request from the ConfigMap's optional cpuRequest: 500m (the limit) keeps a Guaranteed pod Guaranteed, no key gives the 10m default", async () => {
      const objects = await kustomize('manifests/injection/admission-policy');
      // The shipped parameters without cpuRequest.
      const shipped = Object.fromEntries(
        Object.entries(findManifest(objects, 'ConfigMap', 'pod-network-controller-injection').data as Record<string, string>).filter(
          ([key]) => key !== 'cpuRequest',
        ),
      );
      const guaranteed = { limits: { cpu: '100m', memory: '64Mi' } };
      const cases: [string, Record<string, string>, string, string][] = [
        ['g', { ...shipped, cpuRequest: '500m' }, '500m', 'Guaranteed'],
        ['d', shipped, '10m', 'Burstable'],
      ];
      for (const [variant, data, cpu, qosClass] of cases) {
        const scope = `${run}-${variant}`;
        const params = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `pnc-injection-${scope}`, namespace: 'pod-network-controller' }, data };
        const policies = scopedToRun(objects, scope).map((o) => {
          if (o.kind === 'MutatingAdmissionPolicyBinding') o.spec.paramRef.name = params.metadata.name;
          return o;
        });
        cleanups.push(await install(admin, [params, ...policies]));
        const scoped = await freshNamespace(admin, { ...INJECT_LABELS, [SCOPE_LABEL]: scope });
        const pod = meshPod(`qos-${variant}`, {
          containers: [
            { ...app, resources: guaranteed },
            { ...proxy, resources: guaranteed },
          ],
        });
        await eventually(`the ${variant} policy to take effect`, async () => {
          const probe = await core.createNamespacedPod({ namespace: scoped, body: pod, dryRun: 'All' });
          return probe.spec?.initContainers?.[0]?.name === 'pnc-init-waiter';
        });
        const created = await core.createNamespacedPod({ namespace: scoped, body: pod });
        expect(created.spec?.initContainers?.[0]?.resources, variant).toEqual({ requests: { cpu, memory: '64Mi' }, limits: { cpu: '500m', memory: '64Mi' } });
        expect(created.status?.qosClass, variant).toBe(qosClass);
      }
    });

    it('leaves namespaces without the injection label alone', async () => {
      const other = await freshNamespace(admin, { [SCOPE_LABEL]: run });
      const pod = await createAndReadBack(meshPod('unlabelled'), other);
      expect(pod.spec?.initContainers).toBeUndefined();
    });
  });

describe('the Istio sidecar-injector template override', () => {
  it('adds the same init container and volume (self-test left to istio-validation)', async () => {
    const values = parse(await readFile(join(ROOT, 'manifests/injection/istio/istiod-values.yaml'), 'utf8'));
    expect(values.pilot.cni.enabled).toBe(true);
    expect(values.sidecarInjectorWebhook.defaultTemplates).toEqual(['sidecar', 'pnc-init-waiter']);
    const overlay = parse(values.sidecarInjectorWebhook.templates['pnc-init-waiter']) as { spec: { initContainers: V1Container[]; volumes: V1Volume[] } };
    const [waiter] = overlay.spec.initContainers;
    expect(overlay.spec.initContainers).toHaveLength(1);
    const { args, env, ...others } = waiter!;
    const rest = { ...others, env: undefined };
    expect(args).toEqual(['--validate=false']);
    // Istio's template data holds the pod's spec: the same variable, from the pod being injected (Always when not yet defaulted).
    expect(env).toEqual([{ name: 'PNC_WAITER_RESTART_POLICY', value: '{{ or .Spec.RestartPolicy "Always" }}' }]);
    expect(rest).toEqual({ ...snippet.initContainer, env: undefined });
    expect(overlay.spec.volumes).toEqual([snippet.volume]);
  });
});
