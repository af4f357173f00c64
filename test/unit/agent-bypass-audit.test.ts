import type { V1Container, V1Pod, V1SecurityContext } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import {
  type AuditPolicy,
  BYPASS_POLICY_LABEL,
  RUNTIME_DEFAULT_CAPABILITIES,
  auditBypass,
  bypassPolicyFor,
  countFindings,
  describeBypass,
} from '../../controller/src/agent/bypass-audit.ts';
import { trimPod } from '../../controller/src/kube/pod-informer.ts';
import { PROXY_UID, istioValidationContainer } from '../../hack/lib/mesh-pods.ts';

const PROXY_IMAGE = 'docker.io/istio/proxyv2:1.28.0';
const policy: AuditPolicy = {
  proxyContainer: 'istio-proxy',
  proxyUid: PROXY_UID,
  proxyGid: PROXY_UID,
  proxyImageIdentity: { uid: PROXY_UID, gid: PROXY_UID },
  runtimeDefaultCapabilities: new Set(RUNTIME_DEFAULT_CAPABILITIES),
};
const CRIO_DEFAULTS = new Set(RUNTIME_DEFAULT_CAPABILITIES.filter((c) => !['NET_RAW', 'MKNOD', 'SYS_CHROOT', 'AUDIT_WRITE'].includes(c)));

/** What Istio's injector gives istio-proxy (and Pod Security restricted asks of every container). */
const istioProxy = (uid = PROXY_UID): V1Container => ({
  name: 'istio-proxy',
  image: PROXY_IMAGE,
  args: ['proxy', 'sidecar'],
  securityContext: {
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
    privileged: false,
    readOnlyRootFilesystem: true,
    runAsGroup: uid,
    runAsNonRoot: true,
    runAsUser: uid,
  },
});

function podOf(app: V1SecurityContext | undefined, extra: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod {
  return {
    metadata: { name: 'web', namespace: 'shop' },
    spec: { containers: [{ name: 'app', image: 'registry.example/app:1', ...(app ? { securityContext: app } : {}) }, istioProxy()], ...extra },
  };
}

/** Container -> finding details, the shape the note is made of. */
function found(pod: V1Pod, p: AuditPolicy = policy): Record<string, string[]> {
  return Object.fromEntries(auditBypass(pod, p).map((c) => [c.container, c.findings.map((f) => f.detail)]));
}

describe('bypass audit: one rule at a time', () => {
  it("a container that sets nothing runs as its image's USER (maybe root) with the runtime's defaults: setuid, setgid, raw sockets", () => {
    const [app] = auditBypass(podOf(undefined), policy);
    expect(app).toEqual({
      container: 'app',
      runsAs: 'image USER, may be root',
      findings: [
        { kind: 'cap_setuid', detail: 'CAP_SETUID' },
        { kind: 'cap_setgid', detail: 'CAP_SETGID' },
        { kind: 'cap_net_raw', detail: 'CAP_NET_RAW' },
      ],
    });
    // CRI-O's recent default has no NET_RAW.
    expect(found(podOf(undefined), { ...policy, runtimeDefaultCapabilities: CRIO_DEFAULTS })).toEqual({ app: ['CAP_SETUID', 'CAP_SETGID'] });
  });

  it('root with drop: [ALL] holds nothing, with or without allowPrivilegeEscalation', () => {
    expect(found(podOf({ runAsUser: 0, capabilities: { drop: ['ALL'] } }))).toEqual({});
    expect(found(podOf({ runAsUser: 0, capabilities: { drop: ['ALL'] }, allowPrivilegeEscalation: false }))).toEqual({});
  });

  it('root dropping single capabilities keeps the rest', () => {
    expect(found(podOf({ runAsUser: 0, capabilities: { drop: ['SETUID', 'NET_RAW'] } }))).toEqual({ app: ['CAP_SETGID'] });
    // containerd prefixes every name itself: a dropped `CAP_SETUID` drops nothing there.
    expect(found(podOf({ runAsUser: 0, capabilities: { drop: ['CAP_SETUID', 'setgid', 'NET_RAW'] } }))).toEqual({ app: ['CAP_SETUID'] });
  });

  it('added capabilities count after drop: [ALL], in either spelling; add: [ALL] gives every one', () => {
    expect(found(podOf({ runAsUser: 0, capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'cap_setuid'] } }))).toEqual({ app: ['CAP_SETUID', 'CAP_NET_ADMIN'] });
    expect(found(podOf({ runAsUser: 0, capabilities: { add: ['ALL'], drop: ['NET_RAW'] } }))).toEqual({ app: ['CAP_SETUID', 'CAP_SETGID', 'CAP_NET_ADMIN'] });
  });

  it('a non-root container with NET_RAW added gets it only through setuid or file-capability binaries', () => {
    const netRaw = { runAsUser: 1000, runAsNonRoot: true, capabilities: { drop: ['ALL'], add: ['NET_RAW'] } };
    expect(auditBypass(podOf(netRaw), policy)).toEqual([
      {
        container: 'app',
        runsAs: 'uid 1000',
        findings: [{ kind: 'privilege_escalation', detail: 'allowPrivilegeEscalation (setuid binaries reach CAP_NET_RAW)' }],
      },
    ]);
    // no_new_privs: the capability never reaches the non-root process.
    expect(found(podOf({ ...netRaw, allowPrivilegeEscalation: false }))).toEqual({});
  });

  it('a non-root container that keeps the defaults can become root through a setuid binary (su, sudo)', () => {
    expect(found(podOf({ runAsUser: 1000 }))).toEqual({ app: ['allowPrivilegeEscalation (setuid binaries reach CAP_SETUID, CAP_SETGID, CAP_NET_RAW)'] });
    expect(found(podOf({ runAsUser: 1000, allowPrivilegeEscalation: false }))).toEqual({});
  });

  it('privileged is one finding: it holds everything', () => {
    expect(auditBypass(podOf({ privileged: true, runAsUser: 1000, allowPrivilegeEscalation: true }), policy)).toEqual([
      { container: 'app', runsAs: 'uid 1000', findings: [{ kind: 'privileged', detail: 'privileged' }] },
    ]);
  });

  it('reads the pod securityContext under the container one: runAsUser and runAsNonRoot', () => {
    const defaults = { capabilities: { drop: ['ALL'], add: ['SETUID'] } };
    expect(found(podOf(defaults, { securityContext: { runAsUser: 0 } }))).toEqual({ app: ['CAP_SETUID'] });
    expect(found(podOf({ ...defaults, allowPrivilegeEscalation: false }, { securityContext: { runAsNonRoot: true } }))).toEqual({});
    expect(found(podOf({ ...defaults, runAsUser: 0 }, { securityContext: { runAsUser: 1000 } }))).toEqual({ app: ['CAP_SETUID'] });
  });

  it('shareProcessNamespace with SYS_PTRACE or SETUID reaches into the proxy', () => {
    const ptrace = { runAsUser: 0, capabilities: { drop: ['ALL'], add: ['SYS_PTRACE'] } };
    expect(found(podOf(ptrace))).toEqual({});
    expect(auditBypass(podOf(ptrace, { shareProcessNamespace: true }), policy)[0]!.findings).toEqual([
      { kind: 'shared_pid', detail: 'shareProcessNamespace+CAP_SYS_PTRACE' },
    ]);
    expect(found(podOf(undefined, { shareProcessNamespace: true }))).toEqual({
      app: ['CAP_SETUID', 'CAP_SETGID', 'CAP_NET_RAW', 'shareProcessNamespace+CAP_SETUID'],
    });
    // Non-root without escalation holds neither: the shared PID namespace alone is not a bypass.
    expect(found(podOf({ runAsUser: 1000, allowPrivilegeEscalation: false, capabilities: { add: ['SYS_PTRACE'] } }, { shareProcessNamespace: true }))).toEqual(
      {},
    );
  });

  it('reports a container running as the proxy identity through the identity policy (one source)', () => {
    const pod = podOf({ runAsUser: 1000, runAsGroup: PROXY_UID, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(auditBypass(pod, policy)).toEqual([{ container: 'app', runsAs: 'uid 1000', findings: [{ kind: 'proxy_identity', detail: 'runAsGroup=1337' }] }]);
  });

  it('judges init containers, native sidecars and ephemeral containers too, in spec order', () => {
    const pod = podOf(
      { runAsUser: 1000, allowPrivilegeEscalation: false },
      {
        initContainers: [
          { name: 'migrate', securityContext: { runAsUser: 0 } },
          { name: 'log-shipper', restartPolicy: 'Always', securityContext: { capabilities: { add: ['NET_ADMIN'] }, runAsUser: 0 } },
        ],
        ephemeralContainers: [{ name: 'debugger', securityContext: { privileged: true } }],
      },
    );
    expect(found(pod)).toEqual({
      migrate: ['CAP_SETUID', 'CAP_SETGID', 'CAP_NET_RAW'],
      'log-shipper': ['CAP_SETUID', 'CAP_SETGID', 'CAP_NET_ADMIN', 'CAP_NET_RAW'],
      debugger: ['privileged'],
    });
  });

  it('survives the informer trimming the pod', () => {
    expect(found(trimPod(podOf(undefined, { shareProcessNamespace: true })))).toEqual(found(podOf(undefined, { shareProcessNamespace: true })));
  });
});

describe('bypass audit: the shapes mesh pods come in', () => {
  it('is quiet for a pod that drops ALL, runs as non-root and sets allowPrivilegeEscalation: false', () => {
    const restricted = { runAsUser: 1000, runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };
    expect(auditBypass(podOf(restricted), policy)).toEqual([]);
    // runAsNonRoot without a UID: the kubelet refuses a root image, so the image USER is not root.
    expect(auditBypass(podOf({ ...restricted, runAsUser: undefined }), policy)).toEqual([]);
  });

  it("is quiet for a pod OpenShift's restricted-v2 SCC mutated, with the proxy at the top of the range", () => {
    const top = 1000659999;
    const pod: V1Pod = {
      metadata: { name: 'web', namespace: 'shop' },
      spec: {
        securityContext: { fsGroup: 1000650000, seLinuxOptions: { level: 's0:c26,c5' }, seccompProfile: { type: 'RuntimeDefault' } },
        containers: [
          {
            name: 'app',
            image: 'registry.example/app:1',
            securityContext: {
              runAsUser: 1000650000,
              runAsNonRoot: true,
              allowPrivilegeEscalation: false,
              capabilities: { drop: ['ALL'] },
            },
          },
          istioProxy(top),
        ],
        initContainers: [istioValidationContainer(top, top, PROXY_IMAGE)],
      },
    };
    expect(auditBypass(pod, { ...policy, proxyUid: top, proxyGid: top })).toEqual([]);
  });

  it("warns about what OpenShift's anyuid lets through: an image running as root with the defaults", () => {
    const pod = podOf({ capabilities: { drop: ['MKNOD'] } }, { securityContext: { seLinuxOptions: { level: 's0:c26,c5' } } });
    expect(found(pod, { ...policy, runtimeDefaultCapabilities: CRIO_DEFAULTS })).toEqual({ app: ['CAP_SETUID', 'CAP_SETGID'] });
  });

  it("leaves Istio's own containers to their own rules: the proxy, and istio-validation in Istio's exact shape", () => {
    const quietApp = { runAsUser: 1000, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };
    const pod = podOf(quietApp, { initContainers: [istioValidationContainer(PROXY_UID, PROXY_UID, PROXY_IMAGE)] });
    pod.spec!.containers[1]!.securityContext = { runAsUser: 0, privileged: true };
    expect(auditBypass(pod, policy)).toEqual([]);
    // The proxy as a native sidecar.
    const native = podOf(quietApp);
    native.spec!.initContainers = [{ ...native.spec!.containers.pop()!, restartPolicy: 'Always' }];
    expect(auditBypass(native, policy)).toEqual([]);
  });

  it('judges a container that only borrows the name istio-validation like any other', () => {
    const borrowed = istioValidationContainer(PROXY_UID, PROXY_UID, PROXY_IMAGE);
    borrowed.securityContext = { ...borrowed.securityContext, allowPrivilegeEscalation: true, capabilities: { add: ['NET_ADMIN'] } };
    const pod = podOf({ runAsUser: 1000, allowPrivilegeEscalation: false }, { initContainers: [borrowed] });
    expect(found(pod)).toEqual({
      'istio-validation': [
        'allowPrivilegeEscalation (setuid binaries reach CAP_SETUID, CAP_SETGID, CAP_NET_ADMIN, CAP_NET_RAW)',
        'runAsUser=1337',
        'runAsGroup=1337',
      ],
    });
  });

  it("warns about Istio's classic istio-init: root with NET_ADMIN and NET_RAW can rewrite the rules", () => {
    const istioInit: V1Container = {
      name: 'istio-init',
      image: PROXY_IMAGE,
      args: ['istio-iptables', '-p', '15001', '-z', '15006', '-u', '1337', '-m', 'REDIRECT'],
      securityContext: {
        allowPrivilegeEscalation: false,
        capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
        privileged: false,
        readOnlyRootFilesystem: false,
        runAsGroup: 0,
        runAsNonRoot: false,
        runAsUser: 0,
      },
    };
    const pod = podOf({ runAsUser: 1000, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } }, { initContainers: [istioInit] });
    expect(auditBypass(pod, policy)).toEqual([
      {
        container: 'istio-init',
        runsAs: 'uid 0',
        findings: [
          { kind: 'cap_net_admin', detail: 'CAP_NET_ADMIN' },
          { kind: 'cap_net_raw', detail: 'CAP_NET_RAW' },
        ],
      },
    ]);
  });
});

describe('bypass audit: notes, counts and the policy', () => {
  it('names each container, how it runs and what it holds', () => {
    const pod = podOf(undefined, { ephemeralContainers: [{ name: 'dbg', securityContext: { privileged: true, runAsUser: 0 } }] });
    expect(describeBypass(auditBypass(pod, policy))).toBe(
      'container "app" (image USER, may be root): CAP_SETUID, CAP_SETGID, CAP_NET_RAW; container "dbg" (uid 0): privileged',
    );
    expect(Object.fromEntries(countFindings(auditBypass(pod, policy)))).toEqual({ cap_setuid: 1, cap_setgid: 1, cap_net_raw: 1, privileged: 1 });
  });

  it('keeps the note short however many containers there are', () => {
    const many = Array.from({ length: 40 }, (_, i): V1Container => ({ name: `worker-${'x'.repeat(40)}-${i}` }));
    const note = describeBypass(auditBypass(podOf(undefined, { initContainers: many }), policy));
    expect(Buffer.byteLength(note)).toBeLessThan(800);
    expect(note).toMatch(/; and \d+ more container\(s\)$/);
  });

  it("takes the node's setting as the floor: a namespace label makes its pods strict, never relaxes a strict node", () => {
    expect(bypassPolicyFor('audit', 'shop', {})).toEqual({ policy: 'audit', from: 'node setting PNC_BYPASS_POLICY=audit' });
    expect(bypassPolicyFor('audit', 'shop', { [BYPASS_POLICY_LABEL]: 'strict' })).toEqual({
      policy: 'strict',
      from: `namespace "shop" label ${BYPASS_POLICY_LABEL}="strict"`,
    });
    expect(bypassPolicyFor('strict', 'shop', { [BYPASS_POLICY_LABEL]: 'audit' })).toEqual({ policy: 'strict', from: 'node setting PNC_BYPASS_POLICY=strict' });
    expect(bypassPolicyFor('audit', 'shop', { [BYPASS_POLICY_LABEL]: 'audit' }).policy).toBe('audit');
  });

  it('takes a label value it does not know as strict, and says so', () => {
    expect(bypassPolicyFor('audit', 'shop', { [BYPASS_POLICY_LABEL]: 'Strict' })).toEqual({
      policy: 'strict',
      from: `namespace "shop" label ${BYPASS_POLICY_LABEL}="Strict", not audit or strict: taken as strict`,
    });
  });
});
