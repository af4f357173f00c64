import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { describeViolations, findIdentityViolations } from '../../controller/src/agent/identity-policy.ts';
import { trimPod } from '../../controller/src/kube/pod-informer.ts';
import { istioValidationContainer } from '../../hack/lib/mesh-pods.ts';

const policy = { proxyContainer: 'istio-proxy', proxyUid: 1337, proxyGid: 1337, proxyImageIdentity: { uid: 1337, gid: 1337 } };

function pod(spec: V1Pod['spec']): V1Pod {
  return { metadata: { name: 'p', namespace: 'n' }, spec };
}

describe('proxy identity policy', () => {
  it('allows the proxy itself to run as 1337', () => {
    const p = pod({
      containers: [
        { name: 'app', securityContext: { runAsUser: 1000 } },
        { name: 'istio-proxy', securityContext: { runAsUser: 1337, runAsGroup: 1337 } },
      ],
    });
    expect(findIdentityViolations(p, policy)).toEqual([]);
  });

  it('refuses an app container running as the proxy UID or GID', () => {
    const p = pod({
      containers: [
        { name: 'app', securityContext: { runAsUser: 1337 } },
        { name: 'side', securityContext: { runAsGroup: 1337 } },
      ],
    });
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
    const p = pod({
      initContainers: [{ name: 'setup', securityContext: { runAsGroup: 1337 } }],
      containers: [{ name: 'app' }],
      ephemeralContainers: [{ name: 'debug', securityContext: { runAsUser: 1337 } }],
    });
    expect(findIdentityViolations(p, policy).map((v) => `${v.container}:${v.field}`)).toEqual(['setup:runAsGroup', 'debug:runAsUser']);
  });

  it('follows a configured proxy identity', () => {
    const p = pod({ containers: [{ name: 'app', securityContext: { runAsUser: 1337 } }] });
    expect(findIdentityViolations(p, { ...policy, proxyUid: 101, proxyGid: 101 })).toEqual([]);
  });

  it('describes violations by container, field and value', () => {
    expect(describeViolations([{ container: 'app', field: 'runAsUser', value: 1337 }])).toBe('container "app" runAsUser=1337');
  });

  it("counts a container of the proxy's image without an identity as running as the image's USER", () => {
    const p = pod({
      containers: [
        { name: 'istio-proxy', image: 'hub/proxyv2:1' },
        { name: 'copy', image: 'hub/proxyv2:1', command: ['sh'] },
        { name: 'other', image: 'app:1' },
      ],
    });
    expect(findIdentityViolations(p, policy).map((v) => `${v.container}:${v.field}`)).toEqual(['copy:runAsUser', 'copy:runAsGroup']);
  });
});

const PROXY_IMAGE = 'docker.io/istio/proxyv2:1.28.0';
const istioValidation = (uid: number, gid: number) => istioValidationContainer(uid, gid, PROXY_IMAGE);
function istioPod(validation: V1Container, uid = 1337, gid = 1337, native = false): V1Pod {
  const proxy: V1Container = { name: 'istio-proxy', image: PROXY_IMAGE, args: ['proxy', 'sidecar'], securityContext: { runAsUser: uid, runAsGroup: gid } };
  const waiter: V1Container = { name: 'pnc-init-waiter', image: 'init-waiter:1', args: ['--validate=false'] };
  return pod({
    initContainers: native ? [validation, { ...proxy, restartPolicy: 'Always' }, waiter] : [validation, waiter],
    containers: native ? [{ name: 'app', securityContext: { runAsUser: 1000 } }] : [{ name: 'app', securityContext: { runAsUser: 1000 } }, proxy],
  });
}
const forged = (change: (c: V1Container) => void): V1Container => {
  const container = istioValidation(1337, 1337);
  change(container);
  return container;
};

describe("Istio's istio-validation init container", () => {
  it('is exempt exactly as Istio injects it: classic and native sidecars, 1337 and an OpenShift identity', () => {
    expect(findIdentityViolations(istioPod(istioValidation(1337, 1337)), policy)).toEqual([]);
    expect(findIdentityViolations(istioPod(istioValidation(1337, 1337), 1337, 1337, true), policy)).toEqual([]);
    const openshift = { ...policy, proxyUid: 1000659999, proxyGid: 1000659999 };
    expect(findIdentityViolations(istioPod(istioValidation(1000659999, 1000659999), 1000659999, 1000659999), openshift)).toEqual([]);
  });

  it("decides the same on the agent's trimmed cache copy of the pod", () => {
    expect(findIdentityViolations(trimPod(istioPod(istioValidation(1337, 1337), 1337, 1337, true)), policy)).toEqual([]);
    const fake = istioPod(forged((c) => (c.image = 'evil/tool:1')));
    expect(findIdentityViolations(trimPod(fake), policy)).toEqual(findIdentityViolations(fake, policy));
    expect(findIdentityViolations(fake, policy)).not.toEqual([]);
  });

  it("is exempt when only the proxy's image carries Istio's image type (ProxyConfig image.imageType)", () => {
    for (const type of ['distroless', 'debug']) {
      const p = istioPod(istioValidation(1337, 1337));
      p.spec!.containers.find((c) => c.name === 'istio-proxy')!.image = `${PROXY_IMAGE}-${type}`;
      expect(findIdentityViolations(p, policy), type).toEqual([]);
    }
    for (const [validation, proxy] of [
      ['docker.io/istio/proxyv2:1.28.0', 'docker.io/istio/proxyv2:1.28.0-evil'],
      ['docker.io/istio/proxyv2:1.28.1', 'docker.io/istio/proxyv2:1.28.0-distroless'],
      ['docker.io/evil/proxyv2:1.28.0', 'docker.io/istio/proxyv2:1.28.0-distroless'],
      ['docker.io/istio/proxyv2@sha256:aa', 'docker.io/istio/proxyv2@sha256:aa-distroless'],
    ]) {
      const p = istioPod(forged((c) => (c.image = validation)));
      p.spec!.containers.find((c) => c.name === 'istio-proxy')!.image = proxy;
      expect(describeViolations(findIdentityViolations(p, policy)), `${validation} beside ${proxy}`).toMatch(/its image .* is not "istio-proxy"'s/);
    }
  });

  it('is exempt when its identity comes from the pod securityContext', () => {
    const validation = forged((c) => {
      delete c.securityContext!.runAsUser;
      delete c.securityContext!.runAsGroup;
    });
    const p = istioPod(validation);
    p.spec!.securityContext = { runAsUser: 1337, runAsGroup: 1337 };
    // The others set their own identity, so only istio-validation's pod-level one is in question.
    p.spec!.containers[0]!.securityContext = { runAsUser: 1000, runAsGroup: 1000 };
    p.spec!.initContainers![1]!.securityContext = { runAsUser: 65532, runAsGroup: 65532 };
    expect(findIdentityViolations(p, policy)).toEqual([]);
  });

  const cases: [string, V1Container, RegExp][] = [
    ['another image', forged((c) => (c.image = 'evil/tool:1')), /image "evil\/tool:1" is not "istio-proxy"'s/],
    ['a command', forged((c) => (c.command = ['/bin/sh', '-c', 'curl 203.0.113.1'])), /sets a command/],
    ['other args', forged((c) => (c.args = ['proxy', 'sidecar'])), /args are not Istio's validation/],
    ['no --skip-rule-apply', forged((c) => (c.args = c.args!.filter((a) => a !== '--skip-rule-apply'))), /args are not Istio's validation/],
    ['no --run-validation', forged((c) => (c.args = c.args!.filter((a) => a !== '--run-validation'))), /args are not Istio's validation/],
    ['privileged', forged((c) => (c.securityContext!.privileged = true)), /privileged/],
    ['privilege escalation allowed', forged((c) => (c.securityContext!.allowPrivilegeEscalation = true)), /allowPrivilegeEscalation/],
    ['privilege escalation unset', forged((c) => delete c.securityContext!.allowPrivilegeEscalation), /allowPrivilegeEscalation/],
    ['added capabilities', forged((c) => (c.securityContext!.capabilities = { add: ['NET_ADMIN'], drop: ['ALL'] })), /adds capabilities NET_ADMIN/],
    ['default capabilities kept', forged((c) => (c.securityContext!.capabilities = {})), /drop ALL/],
    ['restartPolicy Always', forged((c) => (c.restartPolicy = 'Always')), /sidecar/],
    ['another group', forged((c) => (c.securityContext!.runAsGroup = 2000)), /runs as 1337:2000, not as the proxy's 1337:1337/],
  ];
  for (const [what, validation, why] of cases) {
    it(`stays refused when it only borrows the name: ${what}`, () => {
      const violations = findIdentityViolations(istioPod(validation), policy);
      expect(violations.length).toBeGreaterThan(0);
      expect(violations.every((v) => v.container === 'istio-validation')).toBe(true);
      expect(describeViolations(violations)).toMatch(why);
      expect(describeViolations(violations)).toContain("not Istio's validation container");
    });
  }

  it('stays refused as a regular or ephemeral container', () => {
    const p = istioPod(istioValidation(1337, 1337));
    p.spec!.containers.push({ ...istioValidation(1337, 1337) });
    p.spec!.initContainers = p.spec!.initContainers!.filter((c) => c.name !== 'istio-validation');
    expect(describeViolations(findIdentityViolations(p, policy))).toMatch(/istio-validation.*not an init container/);
  });

  it('a proxy-image container with an unset identity is not exempt when anything else differs', () => {
    const validation = forged((c) => {
      delete c.securityContext!.runAsUser;
      delete c.securityContext!.runAsGroup;
      c.command = ['sh'];
    });
    expect(findIdentityViolations(istioPod(validation), policy).map((v) => v.field)).toEqual(['runAsUser', 'runAsGroup']);
  });

  it('does not exempt other containers running as the proxy in the same pod', () => {
    const p = istioPod(istioValidation(1337, 1337));
    p.spec!.containers[0]!.securityContext = { runAsUser: 1337 };
    expect(findIdentityViolations(p, policy)).toEqual([{ container: 'app', field: 'runAsUser', value: 1337 }]);
  });
});
