// Istio's own istio-iptables as a reference: the arguments Istio's sidecar injector gives
// istio-init for a pod's annotations, and the binary run with them (istioBinDir in
// hack/lib/istio-injector.ts builds it).
import { join } from 'node:path';
import { runInNetns, type ExecResult } from '../../controller/src/redirect/index.ts';
import type { IptablesMode } from '../../controller/src/redirect/index.ts';

/** What decides istio-init's arguments: the pod's annotations and the mesh-wide (here: node-wide) settings. */
export interface IstioPodSettings {
  annotations: Record<string, string>;
  /** ISTIO_DUAL_STACK: also program IPv6 (and add ::6 to lo). */
  dualStack: boolean;
  proxyUid: number;
  proxyGid: number;
  /** istio-cni style DNS capture: every port-53 flow, not only resolv.conf's nameservers. */
  captureDns: boolean;
  /** Mesh-wide defaults (values.global.proxy.*), each replaced, not extended, by the pod's annotation. */
  excludeInboundPorts?: number[];
  excludeOutboundPorts?: number[];
  excludeOutboundCidrs?: string[];
}

const STATUS_PORT = '15020';

/** Istio's template function: the status port appended to the excluded inbound ports unless already there. */
function excludeInboundPort(statusPort: string, excluded: string): string {
  const port = statusPort.trim();
  if (port === '' || port === '0') return excluded;
  const ports = excluded.split(',').map((p) => p.trim());
  if (ports.includes(port)) return excluded;
  return [...ports.filter((p) => p !== ''), port].join(',');
}

/**
 * istio-init's args as the injection template writes them, plus -g (istio-cni passes the
 * proxy's runAsGroup; the template leaves it to default to -u, the same when they are equal)
 * and the DNS and backend flags. Env: ISTIO_DUAL_STACK as the injector's proxyMetadata sets it.
 */
export function istioInitArgs(settings: IstioPodSettings, mode: IptablesMode): { args: string[]; env: Record<string, string> } {
  const a = settings.annotations;
  const has = (name: string) => Object.hasOwn(a, name);
  const excluded = excludeInboundPort(
    a['status.sidecar.istio.io/port'] ?? STATUS_PORT,
    a['traffic.sidecar.istio.io/excludeInboundPorts'] ?? (settings.excludeInboundPorts ?? []).join(','),
  );
  const args = [
    '-p',
    '15001',
    '-z',
    '15006',
    '-u',
    String(settings.proxyUid),
    '-m',
    a['sidecar.istio.io/interceptionMode'] ?? 'REDIRECT',
    '-i',
    a['traffic.sidecar.istio.io/includeOutboundIPRanges'] ?? '*',
    '-x',
    a['traffic.sidecar.istio.io/excludeOutboundIPRanges'] ?? (settings.excludeOutboundCidrs ?? []).join(','),
    '-b',
    a['traffic.sidecar.istio.io/includeInboundPorts'] ?? '*',
    '-d',
    excluded === '' ? '15090,15021' : `15090,15021,${excluded}`,
  ];
  if (has('traffic.sidecar.istio.io/includeOutboundPorts')) args.push('-q', a['traffic.sidecar.istio.io/includeOutboundPorts']!);
  const excludeOutboundPorts = a['traffic.sidecar.istio.io/excludeOutboundPorts'] ?? (settings.excludeOutboundPorts ?? []).join(',');
  if (excludeOutboundPorts !== '') args.push('-o', excludeOutboundPorts);
  const virtual = a['istio.io/reroute-virtual-interfaces'] ?? a['traffic.sidecar.istio.io/kubevirtInterfaces'];
  if (virtual !== undefined) args.push('-k', virtual);
  if (has('traffic.sidecar.istio.io/excludeInterfaces')) args.push('-c', a['traffic.sidecar.istio.io/excludeInterfaces']!);
  args.push('-g', String(settings.proxyGid));
  if (settings.captureDns) args.push('--redirect-dns', '--capture-all-dns');
  args.push('--force-iptables-binary', mode, '--log_output_level=default:warn');
  return { args, env: settings.dualStack ? { ISTIO_DUAL_STACK: 'true' } : {} };
}

/** Runs istio-iptables inside the netns (as istio-init would in the pod); the caller checks the exit code. */
export function runIstioIptables(binDir: string, netnsPath: string, settings: IstioPodSettings, mode: IptablesMode): Promise<ExecResult> {
  const { args, env } = istioInitArgs(settings, mode);
  const assignments = Object.entries(env).map(([key, value]) => `${key}=${value}`);
  return runInNetns(netnsPath, ['env', ...assignments, join(binDir, 'istio-iptables'), ...args]);
}
