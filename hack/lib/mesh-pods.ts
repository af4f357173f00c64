// Pod manifests for the simulated node (end-to-end tests, demo, benchmarks): what an
// injected mesh pod looks like (app + `istio-proxy` + the `pnc-init-waiter` init container)
// and each variation the agent must treat differently; the UIDs and the waiter's container
// name the real-node pods share. Pure builders: no API calls here.
import type { V1Container, V1Pod } from '@kubernetes/client-node';

export const PROXY_CONTAINER = 'istio-proxy';
export const WAITER_CONTAINER = 'pnc-init-waiter';
export const PROXY_UID = 1337;
export const APP_UID = 1000;

/**
 * The istio-iptables arguments Istio's injection template gives `istio-validation` with
 * pilot.cni.enabled and no traffic annotations (pinned against Istio's real injector in the
 * Istio injection e2e test).
 */
export function istioValidationArgs(uid: number): string[] {
  return [
    'istio-iptables',
    ...['-p', '15001', '-z', '15006', '-u', String(uid), '-m', 'REDIRECT'],
    ...['-i', '*', '-x', '', '-b', '*', '-d', '15090,15021,15020'],
    '--log_output_level=default:info',
    '--run-validation',
    '--skip-rule-apply',
  ];
}

/** `istio-validation` exactly as Istio's injector writes it: the proxy's image and identity, no privilege. */
export function istioValidationContainer(uid: number, gid: number, image: string): V1Container {
  return {
    name: 'istio-validation',
    image,
    args: istioValidationArgs(uid),
    securityContext: {
      allowPrivilegeEscalation: false,
      privileged: false,
      capabilities: { drop: ['ALL'] },
      readOnlyRootFilesystem: true,
      runAsGroup: gid,
      runAsUser: uid,
      runAsNonRoot: true,
    },
  };
}

export interface MeshPodOptions {
  annotations?: Record<string, string>;
  /** Include the istio-proxy container (default true). */
  proxy?: boolean;
  /** Include the pnc-init-waiter init container (default true). */
  waiter?: boolean;
  hostNetwork?: boolean;
  /** runAsUser/runAsGroup of the app container (default 1000). */
  appUid?: number;
  appGid?: number;
  /** Pod-level securityContext runAsUser, inherited by containers that set none. */
  podRunAsUser?: number;
}

const restricted = (uid: number, gid: number) => ({
  runAsUser: uid,
  runAsGroup: gid,
  runAsNonRoot: true,
  allowPrivilegeEscalation: false,
  capabilities: { drop: ['ALL'] },
});

export function meshPod(name: string, nodeName: string, options: MeshPodOptions = {}): V1Pod {
  const app: V1Container = {
    name: 'app',
    image: 'registry.example/app:1',
    securityContext: restricted(options.appUid ?? APP_UID, options.appGid ?? options.appUid ?? APP_UID),
  };
  // So the app inherits the pod-level runAsUser (the other way to run as the proxy UID).
  if (options.podRunAsUser !== undefined) delete app.securityContext?.runAsUser;
  const containers: V1Container[] = [app];
  if (options.proxy ?? true) {
    containers.push({ name: PROXY_CONTAINER, image: 'registry.example/proxyv2:1', securityContext: restricted(PROXY_UID, PROXY_UID) });
  }
  const pod: V1Pod = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, annotations: { ...options.annotations }, labels: { app: name } },
    spec: {
      nodeName,
      containers,
      automountServiceAccountToken: false,
      ...(options.hostNetwork ? { hostNetwork: true } : {}),
      ...(options.podRunAsUser !== undefined ? { securityContext: { runAsUser: options.podRunAsUser } } : {}),
    },
  };
  if (options.waiter ?? true) {
    pod.spec!.initContainers = [{ name: WAITER_CONTAINER, image: 'registry.example/init-waiter:1', securityContext: restricted(65532, 65532) }];
  }
  return pod;
}

/** A pod outside the mesh: one app container, no proxy, no waiter. */
export function plainPod(name: string, nodeName: string): V1Pod {
  return meshPod(name, nodeName, { proxy: false, waiter: false });
}

/** A mesh-shaped pod on the node's own network namespace: must never be programmed. */
export function hostNetworkMeshPod(name: string, nodeName: string): V1Pod {
  return meshPod(name, nodeName, { hostNetwork: true });
}

/** A mesh pod whose app container runs as the proxy UID and so would bypass redirection. */
export function proxyUidAppPod(name: string, nodeName: string): V1Pod {
  return meshPod(name, nodeName, { appUid: PROXY_UID });
}

export const BAD_ANNOTATION = 'traffic.sidecar.istio.io/excludeInboundPorts';
export const BAD_VALUE = '15020,notaport';

/** A mesh pod with an Istio annotation the engine must reject (the error names it and its value). */
export function badAnnotationPod(name: string, nodeName: string, annotation = BAD_ANNOTATION, value = BAD_VALUE): V1Pod {
  return meshPod(name, nodeName, { annotations: { [annotation]: value } });
}
