// Istio's injection path on the local cluster's real node, shared by the real-node suite and
// bench:node: the Istio proxy stand-in image (hack/build-images.sh --istio-proxy: Istio's real
// pilot-agent runs istio-validation) imported into the node, the istiod chart rendered with
// our Helm values (only image names changed), and Istio's injector served as the cluster's
// mutating webhook for one namespace.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { istioBinDir, registerInjector, renderIstiod, startInjector } from './istio-injector.ts';
import { runWithProgress } from './process.ts';
import { IMAGES, standInPod, waitForInjected } from './real-node.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const VALUES = 'manifests/injection/istio/istiod-values.yaml';
const SHIPPED_WAITER_IMAGE = 'ghcr.io/pod-network-controller/init-waiter:0.2.0';
const SCOPE_KEY = 'pnc-istio-path/injector';
const REPO = 'localhost/pod-network-controller';

export const ISTIO_PROXY_IMAGE = `${REPO}/istio-proxy:dev`;
export const VALIDATION_CONTAINER = 'istio-validation';
/** What Istio's validation logs when the redirect is proven (tools/istio-iptables/pkg/validation). */
export const VALIDATION_PASSED = 'Validation passed, iptables rules established';

export interface IstioPath {
  /** Where pods get Istio's injection (label istio-injection=enabled) and our template. */
  namespace: string;
  stop(): Promise<void>;
}

/**
 * Builds and imports the Istio proxy stand-in image, renders istiod with our values, serves
 * Istio's injector for NAMESPACE (created here, with what istiod's namespace controller would
 * put in it) and waits until it injects. stop() removes all of it.
 */
export async function setUpIstioPath(
  kc: KubeConfig,
  kubeconfig: string,
  containerdAddress: string,
  namespace: string,
  print: (line: string) => void = () => {},
): Promise<IstioPath> {
  const core = kc.makeApiClient(CoreV1Api);
  const cleanups: (() => Promise<unknown>)[] = [];
  const stop = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch((error: unknown) => print(`istio path cleanup: ${String(error)}`));
  };
  try {
    print('hack/build-images.sh --istio-proxy --import (Istio pilot-agent from the Go module proxy; cold: minutes)');
    await runWithProgress(['bash', join(ROOT, 'hack/build-images.sh'), '--istio-proxy', '--import'], { CONTAINERD_ADDRESS: containerdAddress });
    const binDir = await istioBinDir();

    const scratch = await mkdtemp(join(tmpdir(), 'pnc-istio-path-'));
    cleanups.push(() => rm(scratch, { recursive: true, force: true }));
    const rendered = await renderIstiod(
      binDir,
      'helm',
      [await localValues(scratch)],
      [
        `global.hub=${REPO}`,
        'global.tag=dev',
        // One image for istio-proxy and istio-validation, as Istio's proxyv2 is both.
        'global.proxy.image=istio-proxy',
        'global.proxy_init.image=istio-proxy',
        'global.imagePullPolicy=IfNotPresent',
      ],
    );
    cleanups.push(() => rendered.remove());
    const injector = await startInjector(binDir, rendered, kubeconfig);
    cleanups.push(() => injector.stop());
    cleanups.push(await registerInjector(kc, rendered, injector, SCOPE_KEY, namespace));

    await core.createNamespace({
      body: {
        metadata: { name: namespace, labels: { 'istio-injection': 'enabled', [SCOPE_KEY]: namespace, 'pod-security.kubernetes.io/enforce': 'restricted' } },
      },
    });
    cleanups.push(() => core.deleteNamespace({ name: namespace }));
    // istiod's namespace controller publishes its CA here; the proxy mounts it (not optional).
    await core.createNamespacedConfigMap({
      namespace,
      body: { metadata: { name: 'istio-ca-root-cert' }, data: { 'root-cert.pem': Buffer.from(injector.caBundle, 'base64').toString() } },
    });
    // Istio's injector (the webhook, and its view of the namespace) injects a moment after this.
    await waitForInjected(core, namespace, istioAppPod('injection-probe'), VALIDATION_CONTAINER, "Istio's injector");
    return { namespace, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Our Helm values as shipped, with only the waiter's image pointed at the locally built one; written in DIR. */
async function localValues(dir: string): Promise<string> {
  const text = await readFile(join(ROOT, VALUES), 'utf8');
  if (text.split(SHIPPED_WAITER_IMAGE).length !== 2) throw new Error(`${VALUES} no longer names ${SHIPPED_WAITER_IMAGE} exactly once`);
  const file = join(dir, 'istiod-values.yaml');
  await writeFile(file, text.replace(SHIPPED_WAITER_IMAGE, IMAGES.initWaiter));
  return file;
}

/** An app pod for the Istio path: the stand-in pods' app container alone; Istio adds the rest. */
export function istioAppPod(name: string, sidecar: 'native' | 'classic' = 'native'): V1Pod {
  const pod = standInPod(name, 'plain');
  pod.metadata!.labels = { 'pnc-demo/kind': 'istio' };
  // The kubelet is v1.37, so Istio's injector picks a native sidecar unless the pod says otherwise.
  if (sidecar === 'classic') pod.metadata!.annotations = { 'sidecar.istio.io/nativeSidecar': 'false' };
  pod.spec!.containers = pod.spec!.containers.filter((c) => c.name === 'app');
  return pod;
}
