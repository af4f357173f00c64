import type { V1Pod } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { decideEligibility } from '../../controller/src/agent/eligibility.ts';

const policy = { proxyContainer: 'istio-proxy', waiterContainer: 'pnc-init-waiter', excludedNamespaces: new Set(['kube-system', 'pnc']) };

function meshPod(overrides: { annotations?: Record<string, string>; labels?: Record<string, string>; namespace?: string } = {}): V1Pod {
  return {
    metadata: { name: 'web', namespace: overrides.namespace ?? 'shop', uid: 'u1', annotations: overrides.annotations ?? {}, labels: overrides.labels ?? {} },
    spec: {
      initContainers: [{ name: 'pnc-init-waiter', image: 'w' }],
      containers: [
        { name: 'app', image: 'a' },
        { name: 'istio-proxy', image: 'p' },
      ],
    },
    status: { phase: 'Pending' },
  };
}

describe('eligibility', () => {
  it('takes a pod with the proxy and the waiter', () => {
    expect(decideEligibility(meshPod(), {}, policy)).toEqual({ eligible: true, reason: 'has-waiter' });
  });

  it('takes a native-sidecar proxy (an init container)', () => {
    const pod = meshPod();
    pod.spec!.containers = [{ name: 'app', image: 'a' }];
    pod.spec!.initContainers!.push({ name: 'istio-proxy', image: 'p', restartPolicy: 'Always' });
    expect(decideEligibility(pod, {}, policy).eligible).toBe(true);
  });

  it('takes an opt-in on the pod or on its namespace instead of the waiter', () => {
    const pod = meshPod();
    pod.spec!.initContainers = [];
    expect(decideEligibility(pod, {}, policy)).toEqual({ eligible: false, reason: 'not-opted-in' });
    expect(decideEligibility(pod, undefined, policy)).toEqual({ eligible: false, reason: 'not-opted-in' });
    expect(decideEligibility(pod, { 'pod-network-controller.io/initialize': 'true' }, policy)).toEqual({ eligible: true, reason: 'namespace-opt-in' });
    pod.metadata!.annotations = { 'pod-network-controller.io/initialize': 'true' };
    expect(decideEligibility(pod, {}, policy)).toEqual({ eligible: true, reason: 'pod-opt-in' });
    pod.metadata!.annotations = { 'pod-network-controller.io/initialize': 'yes' };
    expect(decideEligibility(pod, {}, policy).eligible).toBe(false);
  });

  it('never takes a hostNetwork pod, whatever else it says', () => {
    const pod = meshPod({ annotations: { 'pod-network-controller.io/initialize': 'true' } });
    pod.spec!.hostNetwork = true;
    expect(decideEligibility(pod, { 'pod-network-controller.io/initialize': 'true' }, policy)).toEqual({ eligible: false, reason: 'host-network' });
  });

  it("skips excluded namespaces, the controller's own included", () => {
    expect(decideEligibility(meshPod({ namespace: 'kube-system' }), {}, policy).reason).toBe('excluded-namespace');
    expect(decideEligibility(meshPod({ namespace: 'pnc' }), {}, policy).reason).toBe('excluded-namespace');
  });

  it('skips pods without the proxy container (configurable name)', () => {
    const pod = meshPod();
    pod.spec!.containers = [{ name: 'app', image: 'a' }];
    expect(decideEligibility(pod, {}, policy).reason).toBe('no-proxy-container');
    expect(decideEligibility(meshPod(), {}, { ...policy, proxyContainer: 'envoy' }).reason).toBe('no-proxy-container');
  });

  it.each(['false', 'False', 'FALSE', '0', 'f', 'F'])('skips sidecar.istio.io/inject=%s (annotation or label)', (value) => {
    expect(decideEligibility(meshPod({ annotations: { 'sidecar.istio.io/inject': value } }), {}, policy).reason).toBe('inject-disabled');
    expect(decideEligibility(meshPod({ labels: { 'sidecar.istio.io/inject': value } }), {}, policy).reason).toBe('inject-disabled');
  });

  it('keeps pods whose inject annotation is true', () => {
    expect(decideEligibility(meshPod({ annotations: { 'sidecar.istio.io/inject': 'true' } }), {}, policy).eligible).toBe(true);
  });

  it('skips terminal and deleting pods', () => {
    for (const phase of ['Succeeded', 'Failed']) {
      const pod = meshPod();
      pod.status = { phase };
      expect(decideEligibility(pod, {}, policy).reason).toBe('terminal');
    }
    const deleting = meshPod();
    deleting.metadata!.deletionTimestamp = new Date();
    expect(decideEligibility(deleting, {}, policy).reason).toBe('deleting');
  });

  it('skips OpenShift build and deployer pods', () => {
    expect(decideEligibility(meshPod({ annotations: { 'openshift.io/build.name': 'b-1' } }), {}, policy).reason).toBe('openshift-build');
    expect(decideEligibility(meshPod({ labels: { 'openshift.io/deployer-pod-for.name': 'd-1' } }), {}, policy).reason).toBe('openshift-deployer');
  });
});
