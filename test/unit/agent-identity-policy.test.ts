import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { describeViolations, findIdentityViolations } from '../../controller/src/agent/identity-policy.ts';

const policy = { proxyContainer: 'istio-proxy', proxyUid: 1337, proxyGid: 1337 };

function pod(spec: V1Pod['spec']): V1Pod {
  return { metadata: { name: 'p', namespace: 'n' }, spec };
}

describe('proxy identity policy', () => {
  it('allows the proxy itself to run as 1337', () => {
    const p = pod({ containers: [{ name: 'app', securityContext: { runAsUser: 1000 } }, { name: 'istio-proxy', securityContext: { runAsUser: 1337, runAsGroup: 1337 } }] });
    expect(findIdentityViolations(p, policy)).toEqual([]);
  });

  it('refuses an app container running as the proxy UID or GID', () => {
    const p = pod({ containers: [{ name: 'app', securityContext: { runAsUser: 1337 } }, { name: 'side', securityContext: { runAsGroup: 1337 } }] });
    expect(findIdentityViolations(p, policy)).toEqual([
      { container: 'app', field: 'runAsUser', value: 1337 },
      { container: 'side', field: 'runAsGroup', value: 1337 },
    ]);
  });

  it('applies the pod securityContext to containers that do not override it', () => {
    const p = pod({
      securityContext: { runAsUser: 1337 },
      containers: [{ name: 'app' }, { name: 'own', securityContext: { runAsUser: 2000 } }, { name: 'istio-proxy' }],
      initContainers: [{ name: 'pnc-init-waiter' }],
    });
    expect(findIdentityViolations(p, policy).map((v) => v.container)).toEqual(['pnc-init-waiter', 'app']);
  });

  it('checks init and ephemeral containers too', () => {
    const p = pod({ initContainers: [{ name: 'setup', securityContext: { runAsGroup: 1337 } }], containers: [{ name: 'app' }], ephemeralContainers: [{ name: 'debug', securityContext: { runAsUser: 1337 } }] });
    expect(findIdentityViolations(p, policy).map((v) => `${v.container}:${v.field}`)).toEqual(['setup:runAsGroup', 'debug:runAsUser']);
  });

  it('follows a configured proxy identity', () => {
    const p = pod({ containers: [{ name: 'app', securityContext: { runAsUser: 1337 } }] });
    expect(findIdentityViolations(p, { ...policy, proxyUid: 101, proxyGid: 101 })).toEqual([]);
  });

  it('describes violations by container, field and value', () => {
    expect(describeViolations([{ container: 'app', field: 'runAsUser', value: 1337 }])).toBe('container "app" runAsUser=1337');
  });
});
