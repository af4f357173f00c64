// Refuse pods whose non-proxy containers would run as the proxy's UID or GID: the
// redirect rules let that identity's traffic through, so such a container would
// bypass the mesh. The one exception is Istio's own `istio-validation` init container,
// exactly as Istio's injector writes it: the proxy's image and identity running
// Istio's redirect check, with no privilege. Pure.
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { effectiveIdentity, findProxyContainer, type ProxyIdentity } from './proxy-identity.ts';

const ISTIO_VALIDATION_CONTAINER = 'istio-validation';

export interface IdentityPolicy {
  proxyContainer: string;
  /** The pod's proxy identity (what its rules exempt). */
  proxyUid: number;
  proxyGid: number;
  /**
   * What the proxy's image runs as when the spec sets no identity (its USER): a container
   * of that image without runAsUser/runAsGroup runs as it.
   */
  proxyImageIdentity: ProxyIdentity;
}

export interface IdentityViolation {
  container: string;
  field: 'runAsUser' | 'runAsGroup';
  value: number;
  /** Why a container named istio-validation was not taken for Istio's. */
  note?: string;
}

/**
 * The effective identity of each container (its own securityContext over the pod's).
 * A UID set only in the image (Dockerfile USER) is invisible here, except for the
 * proxy's own image, whose USER is known.
 */
export function findIdentityViolations(pod: V1Pod, policy: IdentityPolicy): IdentityViolation[] {
  const spec = pod.spec;
  const podContext = spec?.securityContext;
  const proxy = findProxyContainer(pod, policy.proxyContainer);
  const containers: V1Container[] = [...(spec?.initContainers ?? []), ...(spec?.containers ?? []), ...((spec?.ephemeralContainers ?? []) as V1Container[])];
  const violations: IdentityViolation[] = [];
  for (const container of containers) {
    if (container.name === policy.proxyContainer) continue;
    const proxyImage = proxy?.image !== undefined && container.image === proxy.image;
    const uid = container.securityContext?.runAsUser ?? podContext?.runAsUser ?? (proxyImage ? policy.proxyImageIdentity.uid : undefined);
    const gid = container.securityContext?.runAsGroup ?? podContext?.runAsGroup ?? (proxyImage ? policy.proxyImageIdentity.gid : undefined);
    if (uid !== policy.proxyUid && gid !== policy.proxyGid) continue;
    let note: string | undefined;
    if (container.name === ISTIO_VALIDATION_CONTAINER) {
      note = istioValidationMismatch(container, pod, proxy, policy);
      if (note === undefined) continue;
    }
    const found: IdentityViolation[] = [];
    if (uid === policy.proxyUid) found.push({ container: container.name, field: 'runAsUser', value: uid });
    if (gid === policy.proxyGid) found.push({ container: container.name, field: 'runAsGroup', value: gid });
    if (note !== undefined) found[found.length - 1]!.note = note;
    violations.push(...found);
  }
  return violations;
}

/** `container` is Istio's own validation init container, exactly as Istio's injector writes it. */
export function isIstioValidation(container: V1Container, pod: V1Pod, policy: IdentityPolicy): boolean {
  return (
    container.name === ISTIO_VALIDATION_CONTAINER &&
    istioValidationMismatch(container, pod, findProxyContainer(pod, policy.proxyContainer), policy) === undefined
  );
}

/**
 * Undefined when `container` is Istio's validation init container as Istio's injector
 * writes it (with pilot.cni.enabled): an init container with the proxy's image and no
 * command (so the image's pilot-agent runs), args `istio-iptables ... --run-validation
 * --skip-rule-apply`, the proxy's UID and GID, no privilege, no added capabilities and
 * every default one dropped. Otherwise the first difference.
 */
function istioValidationMismatch(container: V1Container, pod: V1Pod, proxy: V1Container | undefined, policy: IdentityPolicy): string | undefined {
  if (!(pod.spec?.initContainers ?? []).includes(container)) return 'not an init container';
  if (container.restartPolicy === 'Always') return 'a sidecar (restartPolicy Always), not a run-once init container';
  if (!proxy?.image) return `${JSON.stringify(policy.proxyContainer)} names no image`;
  if (!sameIstioImage(container.image, proxy.image))
    return `its image ${JSON.stringify(container.image ?? '')} is not ${JSON.stringify(policy.proxyContainer)}'s ${JSON.stringify(proxy.image)}`;
  if ((container.command ?? []).length > 0) return "it sets a command (Istio's runs the image's entrypoint)";
  const args = container.args ?? [];
  if (args[0] !== 'istio-iptables' || !args.includes('--run-validation') || !args.includes('--skip-rule-apply')) {
    return "its args are not Istio's validation (istio-iptables ... --run-validation --skip-rule-apply)";
  }
  const own = effectiveIdentity(container, pod, policy.proxyImageIdentity);
  if (own.uid !== policy.proxyUid || own.gid !== policy.proxyGid)
    return `it runs as ${own.uid}:${own.gid}, not as the proxy's ${policy.proxyUid}:${policy.proxyGid}`;
  const context = container.securityContext;
  if (context?.privileged === true) return 'it is privileged';
  if (context?.allowPrivilegeEscalation !== false) return 'it does not set allowPrivilegeEscalation: false';
  if ((context.capabilities?.add ?? []).length > 0) return `it adds capabilities ${context.capabilities!.add!.join(',')}`;
  if (!(context.capabilities?.drop ?? []).includes('ALL')) return 'it does not drop ALL capabilities';
  return undefined;
}

/**
 * The same image, or the same repository and tag but for Istio's image-type suffix: a
 * ProxyConfig image type (e.g. distroless) reaches the proxy's image only, not
 * istio-validation's (`proxyv2:1.28.0-distroless` beside `proxyv2:1.28.0`).
 */
function sameIstioImage(image: string | undefined, proxyImage: string): boolean {
  if (image === proxyImage) return true;
  if (image === undefined || image.includes('@') || proxyImage.includes('@')) return false;
  const base = (ref: string) => ref.replace(/^(.*\/[^/:]+:[^/:]+?)-(distroless|debug)$/, '$1');
  return base(image) === base(proxyImage);
}

export function describeViolations(violations: readonly IdentityViolation[]): string {
  return violations
    .map((v) => `container ${JSON.stringify(v.container)} ${v.field}=${v.value}${v.note ? ` (not Istio's validation container: ${v.note})` : ''}`)
    .join(', ');
}
