// Prometheus metrics (names are part of the agent contract). Own registry, so tests
// and several agents in one process do not collide.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const OUTCOMES = ['initialized', 'verified', 'repaired', 'error', 'refused', 'invalid_annotation'] as const;
export type Outcome = (typeof OUTCOMES)[number];
export type WatchedResource = 'pods' | 'namespaces';

export interface AgentMetrics {
  registry: Registry;
  podResults: Counter<'outcome'>;
  markLatency: Histogram;
  queueDepth: Gauge;
  watchRestarts: Counter<'resource'>;
  watchRequests: Counter<'resource'>;
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
    help: 'LIST and WATCH requests started, by resource.',
    labelNames: ['resource'],
    registers: [registry],
  });
  for (const resource of ['pods', 'namespaces']) {
    watchRestarts.inc({ resource }, 0);
    watchRequests.inc({ resource }, 0);
  }
  return {
    registry,
    podResults,
    markLatency: new Histogram({
      name: 'pnc_mark_latency_seconds',
      help: 'From the pod sandbox netns being found to the mark being written.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    queueDepth: new Gauge({ name: 'pnc_queue_depth', help: 'Pods waiting in the work queue.', registers: [registry] }),
    watchRestarts,
    watchRequests,
  };
}
