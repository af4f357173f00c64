// The namespace informer keeps only NAMESPACE_KEYS of each namespace: every reader of a
// namespace's labels and annotations must decide on the trimmed namespace as on the whole one.
import type { V1Namespace, V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { BYPASS_POLICY_LABEL, bypassPolicyFor } from '../../controller/src/agent/bypass-audit.ts';
import { decideEligibility } from '../../controller/src/agent/eligibility.ts';
import { NAMESPACE_KEYS } from '../../controller/src/agent/namespace-keys.ts';
import { SUPPLEMENTAL_GROUPS_ANNOTATION, UID_RANGE_ANNOTATION, namespaceProxyIds } from '../../controller/src/agent/proxy-identity.ts';
import { trimNamespace } from '../../controller/src/kube/namespace-informer.ts';
import { INITIALIZE_ANNOTATION } from '../../controller/src/pod-contract/index.ts';

/** A namespace as an OpenShift cluster serves it, opted in and strict. */
const whole: V1Namespace = {
  metadata: {
    name: 'team-a',
    uid: '6f1c2a9e-0000-4000-8000-000000000001',
    resourceVersion: '4711',
    labels: {
      'kubernetes.io/metadata.name': 'team-a',
      'pod-security.kubernetes.io/audit': 'restricted',
      [BYPASS_POLICY_LABEL]: 'strict',
    },
    annotations: {
      'openshift.io/description': 'the team',
      'openshift.io/requester': 'alice',
      'openshift.io/sa.scc.mcs': 's0:c26,c15',
      [UID_RANGE_ANNOTATION]: '1000680000/10000',
      [SUPPLEMENTAL_GROUPS_ANNOTATION]: '1000690000/10000',
      [INITIALIZE_ANNOTATION]: 'true',
    },
    managedFields: [{ manager: 'cluster-policy-controller', operation: 'Apply', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': {} } }],
  },
  spec: { finalizers: ['kubernetes'] },
  status: { phase: 'Active' },
};

const podWithoutWaiter: V1Pod = {
  metadata: { name: 'web', namespace: 'team-a', uid: 'u1' },
  spec: {
    containers: [
      { name: 'app', image: 'a' },
      { name: 'istio-proxy', image: 'p' },
    ],
  },
  status: { phase: 'Pending' },
};
const policy = { proxyContainer: 'istio-proxy', waiterContainer: 'pnc-init-waiter', excludedNamespaces: new Set<string>() };

describe('NAMESPACE_KEYS: what the namespace informer keeps', () => {
  const trimmed = trimNamespace(whole, NAMESPACE_KEYS).metadata!;

  it('keeps the name and the keys the agent reads, nothing else', () => {
    expect(trimmed).toEqual({
      name: 'team-a',
      labels: { [BYPASS_POLICY_LABEL]: 'strict' },
      annotations: { [UID_RANGE_ANNOTATION]: '1000680000/10000', [SUPPLEMENTAL_GROUPS_ANNOTATION]: '1000690000/10000', [INITIALIZE_ANNOTATION]: 'true' },
    });
  });

  it('every reader decides on the trimmed namespace as on the whole one', () => {
    const full = whole.metadata!;
    expect(decideEligibility(podWithoutWaiter, trimmed.annotations, policy)).toEqual({ eligible: true, reason: 'namespace-opt-in' });
    expect(decideEligibility(podWithoutWaiter, trimmed.annotations, policy)).toEqual(decideEligibility(podWithoutWaiter, full.annotations, policy));
    expect(namespaceProxyIds(trimmed.annotations)).toMatchObject({ uid: { value: 1000689999 }, gid: { value: 1000699999 } });
    expect(namespaceProxyIds(trimmed.annotations)).toEqual(namespaceProxyIds(full.annotations));
    expect(bypassPolicyFor('audit', 'team-a', trimmed.labels ?? {}).policy).toBe('strict');
    expect(bypassPolicyFor('audit', 'team-a', trimmed.labels ?? {})).toEqual(bypassPolicyFor('audit', 'team-a', full.labels!));
  });
});
