// Types shared by the redirect engine's pure parts (plan, render) and its effects (apply).

import type { Family } from '../pod-contract/index.ts';

export type { Family };
export const FAMILIES: readonly Family[] = ['ipv4', 'ipv6'];

/** The parts of a Pod the engine reads; structurally compatible with client-node's V1Pod. */
export interface PodLike {
  metadata?: { name?: string; namespace?: string; uid?: string; annotations?: Record<string, string> };
  spec?: unknown;
  status?: unknown;
}

/** Node-wide settings: set by the operator (flags/env of the agent), never by a pod. */
export interface NodeRedirectConfig {
  proxyUid: number;
  proxyGid: number;
  /** Envoy's outbound capture port (ISTIO_REDIRECT target). */
  outboundPort: number;
  /** Envoy's inbound capture port (ISTIO_IN_REDIRECT target). */
  inboundPort: number;
  /** Port of the proxy's DNS server, used only when captureDns is on. */
  dnsPort: number;
  /** Default for pods whose proxy config does not say (proxyMetadata.ISTIO_META_DNS_CAPTURE). */
  captureDns: boolean;
  families: Family[];
  /** Inbound ports never redirected, added to the built-in ones (15008, 15021, 15090, the status port). */
  excludeInboundPorts: number[];
  /** Outbound ports never redirected, on every pod of the node. */
  excludeOutboundPorts: number[];
  /** Outbound destinations never redirected, on every pod of the node; either family. */
  excludeOutboundCidrs: string[];
}

declare const validated: unique symbol;

/**
 * A node config validateNodeConfig accepted: the only kind planFromPod takes, so it is
 * validated once where it is built (agent and CLI start), not on every reconcile.
 */
export type ValidatedNodeConfig = Readonly<NodeRedirectConfig> & { readonly [validated]: true };

/** The UID/GID the pod's proxy runs as, when it is not the node's default. */
export interface ProxyIdentity {
  uid: number;
  gid: number;
}

/** CIDRs split by family, each in the canonical text iptables-save prints. */
export interface CidrsByFamily {
  ipv4: string[];
  ipv6: string[];
}

/**
 * Everything needed to render the rules of one pod; every value already validated.
 * Lists are sorted and de-duplicated so equal intent gives equal rules (and hash).
 */
export interface RedirectPlan {
  /** "namespace/name", for messages. */
  pod: string;
  families: Family[];
  proxyUid: number;
  proxyGid: number;
  outboundPort: number;
  inboundPort: number;
  dnsPort: number;
  /** The pod's own DNS capture setting, else the node's. */
  captureDns: boolean;
  /** Interfaces whose traffic is never captured, in or out (e.g. a Multus secondary network). */
  excludeInterfaces: string[];
  inbound: {
    /** '*' = every port not excluded; a list = only these; [] = no inbound capture. */
    includePorts: '*' | number[];
    /** RETURNed before the catch-all in '*' mode; as in Istio, empty for a list (the list alone decides). */
    excludePorts: number[];
  };
  outbound: {
    /** '*' = every destination not excluded; per-family lists otherwise (empty = none). */
    includeCidrs: '*' | CidrsByFamily;
    /**
     * An include range is a loopback range (Istio's special case): then app traffic out of lo
     * is not exempted, so that range is really captured (in both families, as Istio does).
     */
    includesLoopback: boolean;
    excludeCidrs: CidrsByFamily;
    includePorts: number[];
    excludePorts: number[];
  };
}

/** Istio's HBONE tunnel port: RETURNed first in ISTIO_INBOUND, before any include list. */
export const TUNNEL_PORT = 15008;

/** Envoy's Prometheus and health ports: never captured inbound with includeInboundPorts "*". */
export const BUILTIN_EXCLUDED_INBOUND_PORTS: readonly number[] = [15021, 15090];

/** The pilot-agent status port, excluded like the built-in ones unless status.sidecar.istio.io/port says otherwise. */
export const DEFAULT_STATUS_PORT = 15020;

export const DEFAULT_NODE_CONFIG: NodeRedirectConfig = Object.freeze({
  proxyUid: 1337,
  proxyGid: 1337,
  outboundPort: 15001,
  inboundPort: 15006,
  dnsPort: 15053,
  captureDns: false,
  families: ['ipv4', 'ipv6'] as Family[],
  excludeInboundPorts: [] as number[],
  excludeOutboundPorts: [] as number[],
  excludeOutboundCidrs: [] as string[],
});
