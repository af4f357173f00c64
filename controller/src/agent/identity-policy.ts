// Refuse pods whose non-proxy containers would run as the proxy's UID or GID: the
// redirect rules let that identity's traffic through, so such a container would
// bypass the mesh (REFERENCE.md section 4, item 6). Pure.
import type { V1Container, V1Pod } from '@kubernetes/client-node';

export interface IdentityPolicy {
  proxyContainer: string;
  proxyUid: number;
  proxyGid: number;
}

export interface IdentityViolation {
  container: string;
  field: 'runAsUser' | 'runAsGroup';
  value: number;
}

/**
 * The effective identity of each container (its own securityContext over the pod's).
 * A UID set only in the image (Dockerfile USER) is invisible here: not covered.
 */
export function findIdentityViolations(pod: V1Pod, policy: IdentityPolicy): IdentityViolation[] {
  const spec = pod.spec;
  const podContext = spec?.securityContext;
  const containers: V1Container[] = [...(spec?.initContainers ?? []), ...(spec?.containers ?? []), ...((spec?.ephemeralContainers ?? []) as V1Container[])];
  const violations: IdentityViolation[] = [];
  for (const container of containers) {
    if (container.name === policy.proxyContainer) continue;
    const uid = container.securityContext?.runAsUser ?? podContext?.runAsUser;
    const gid = container.securityContext?.runAsGroup ?? podContext?.runAsGroup;
    if (uid === policy.proxyUid) violations.push({ container: container.name, field: 'runAsUser', value: uid });
    if (gid === policy.proxyGid) violations.push({ container: container.name, field: 'runAsGroup', value: gid });
  }
  return violations;
}

export function describeViolations(violations: readonly IdentityViolation[]): string {
  return violations.map((v) => `container ${JSON.stringify(v.container)} ${v.field}=${v.value}`).join(', ');
}
