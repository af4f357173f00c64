// The Istio pod annotations the redirect engine reads, and those it refuses. The
// init-waiter reads some of them too (to pick its probe target).
export const ANNOTATIONS = {
  interceptionMode: 'sidecar.istio.io/interceptionMode',
  includeInboundPorts: 'traffic.sidecar.istio.io/includeInboundPorts',
  excludeInboundPorts: 'traffic.sidecar.istio.io/excludeInboundPorts',
  includeOutboundIPRanges: 'traffic.sidecar.istio.io/includeOutboundIPRanges',
  excludeOutboundIPRanges: 'traffic.sidecar.istio.io/excludeOutboundIPRanges',
  includeOutboundPorts: 'traffic.sidecar.istio.io/includeOutboundPorts',
  excludeOutboundPorts: 'traffic.sidecar.istio.io/excludeOutboundPorts',
  excludeInterfaces: 'traffic.sidecar.istio.io/excludeInterfaces',
  statusPort: 'status.sidecar.istio.io/port',
  proxyConfig: 'proxy.istio.io/config',
} as const;

/**
 * Istio annotations that change redirection in ways this engine does not implement: a pod
 * carrying one is refused (never half-honoured), with the reason given here.
 */
export const UNSUPPORTED_ANNOTATIONS: Readonly<Record<string, string>> = {
  'traffic.sidecar.istio.io/kubevirtInterfaces':
    'rerouting virtual-machine interfaces to the outbound capture port is not supported (remove it, or keep the pod out of the mesh)',
  'istio.io/reroute-virtual-interfaces':
    'rerouting virtual-machine interfaces to the outbound capture port is not supported (remove it, or keep the pod out of the mesh)',
};
