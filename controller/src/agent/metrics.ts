// Prometheus metrics (names are part of the agent contract). Own registry, so tests
// and several agents in one process do not collide.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { NodeFamilies } from './node-families.ts';

const OUTCOMES = ['initialized', 'verified', 'repaired', 'error', 'refused', 'invalid_annotation'] as const;
export type Outcome = (typeof OUTCOMES)[number];

export interface AgentMetrics {
  registry: Registry;
  podResults: Counter<'outcome'>;
  markLatency: Histogram;
  queueDepth: Gauge;
  logLinesDropped: Counter;
  watchRestarts: Counter<'resource'>;
  watchRequests: Counter<'resource'>;
  watchUp: Gauge<'resource'>;
  iptablesLockWaits: Counter;
  iptablesLockTimeouts: Counter;
  markWriteRefusals: Counter<'status'>;
  reconcileBugs: Counter;
  podBypassFindings: Gauge<'namespace' | 'pod' | 'finding'>;
  familyEnabled: Gauge<'family'>;
}

export function createMetrics(): AgentMetrics {
  const registry = new Registry();
  // process_resident_memory_bytes and friends: the RSS budget is part of the design.
  collectDefaultMetrics({ register: registry });
  const podResults = new Counter({
    name: 'pnc_pod_results_total',
    help: 'Pods handled, by outcome.',
    labelNames: ['outcome'],
    registers: [registry],
  });
  // Present from the start at 0, so rate() and alerts see every outcome.
  for (const outcome of OUTCOMES) podResults.inc({ outcome }, 0);
  const watchRestarts = new Counter({
    name: 'pnc_watch_restarts_total',
    help: 'List/watch restarts after an error, by resource.',
    labelNames: ['resource'],
    registers: [registry],
  });
  const watchRequests = new Counter({
    name: 'pnc_watch_requests_total',
    help: 'LIST (each page) and WATCH requests started, by resource.',
    labelNames: ['resource'],
    registers: [registry],
  });
  const watchUp = new Gauge({
    name: 'pnc_watch_up',
    help: '1 while the watch of this resource is open (changes arrive as they happen), else 0.',
    labelNames: ['resource'],
    registers: [registry],
  });
  for (const resource of ['pods', 'namespaces']) {
    watchRestarts.inc({ resource }, 0);
    watchRequests.inc({ resource }, 0);
    watchUp.set({ resource }, 0);
  }
  return {
    registry,
    podResults,
    markLatency: new Histogram({
      name: 'pnc_mark_latency_seconds',
      help: 'From the pod sandbox netns being found (queue wait included) to the mark being written.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    queueDepth: new Gauge({ name: 'pnc_queue_depth', help: 'Pods waiting in the work queue.', registers: [registry] }),
    watchRestarts,
    watchRequests,
    watchUp,
    logLinesDropped: new Counter({
      name: 'pnc_log_lines_dropped_total',
      help: 'Log lines dropped because stdout was not read (a stalled container log pipe) and a MiB of lines already waited.',
      registers: [registry],
    }),
    iptablesLockWaits: new Counter({
      name: 'pnc_iptables_lock_waits_total',
      help: 'Programming or verifying a pod that was still waiting on iptables after 3 s (the xtables lock held by another program, usually).',
      registers: [registry],
    }),
    iptablesLockTimeouts: new Counter({
      name: 'pnc_iptables_lock_timeouts_total',
      help: 'iptables gave up waiting for the xtables lock (PNC_IPTABLES_LOCK_TIMEOUT); the pod is retried.',
      registers: [registry],
    }),
    markWriteRefusals: new Counter({
      name: 'pnc_mark_write_refusals_total',
      help: 'Mark writes the API server refused for a reason retrying cannot fix (e.g. 422: annotations too large), by HTTP status.',
      labelNames: ['status'],
      registers: [registry],
    }),
    // Per pod, so bounded by the eligible pods on the node: each pod's series go when the agent forgets it.
    podBypassFindings: new Gauge({
      name: 'pnc_pod_bypass_findings',
      help: 'Containers of a mesh pod that could bypass the redirect, by finding (e.g. cap_setuid); present while the agent knows the pod.',
      labelNames: ['namespace', 'pod', 'finding'],
      registers: [registry],
    }),
    familyEnabled: new Gauge({
      name: 'pnc_redirect_family_enabled',
      help: 'Whether this node redirects the address family: 1, or 0 when PNC_FAMILIES leaves it out or the kernel cannot (the log and /readyz say why).',
      labelNames: ['family'],
      registers: [registry],
    }),
    reconcileBugs: new Counter({
      name: 'pnc_reconcile_bugs_total',
      help: 'Passes that hit a bug in the agent (logged at error level; the pod is retried, nothing is written onto it). Should stay 0.',
      registers: [registry],
    }),
  };
}

/** pnc_redirect_family_enabled: 1 for each family the node redirects, 0 for the others. */
export function setNodeFamilies(metrics: AgentMetrics, families: NodeFamilies): void {
  for (const family of ['ipv4', 'ipv6'] as const) metrics.familyEnabled.set({ family }, families.enabled.includes(family) ? 1 : 0);
}
