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

/** What OpenShift's SCC admission writes on a pod: the SCC it was admitted under. */
export const OPENSHIFT_SCC_ANNOTATION = 'openshift.io/scc';

export interface OpenShiftMeshPodOptions {
  /** The proxy's UID and GID: the top of the namespace's range, as Istio's injector sets them on OpenShift. */
  proxyUid: number;
  proxyGid?: number;
  serviceAccountName?: string;
}

/**
 * A mesh pod as a user writes it for OpenShift, before injection: no UID pinned but the proxy's,
 * and what `restricted-v2` demands (no privilege escalation, every capability dropped, non-root,
 * the runtime's seccomp profile), so admission picks the app's and the waiter's UIDs from the
 * namespace's range. No node: the SCC's answer is what matters.
 */
export function openShiftMeshPod(name: string, options: OpenShiftMeshPodOptions): V1Pod {
  const confined = { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: name } },
    spec: {
      ...(options.serviceAccountName ? { serviceAccountName: options.serviceAccountName } : {}),
      automountServiceAccountToken: false,
      securityContext: { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
      containers: [
        { name: 'app', image: 'registry.example/app:1', securityContext: confined },
        {
          name: PROXY_CONTAINER,
          image: 'registry.example/proxyv2:1',
          securityContext: { ...confined, runAsUser: options.proxyUid, runAsGroup: options.proxyGid ?? options.proxyUid },
        },
      ],
    },
  };
}

/** A pod with NET_ADMIN, as a cluster admin might run a network tool in an application namespace. */
export function netAdminPod(name: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name },
    spec: {
      automountServiceAccountToken: false,
      containers: [{ name: 'tool', image: 'registry.example/nettool:1', securityContext: { capabilities: { add: ['NET_ADMIN'] } } }],
    },
  };
}
