// The node agent's own contract beyond the scenarios: settings errors, metric
// names, Event aggregation and the SIGTERM drain, against the real control plane and
// the pod-sandbox simulator.
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROLLER_BUNDLE, metricValue, startController } from '../../hack/lib/controller-process.ts';
import type { ControllerProcess } from '../../hack/lib/controller-process.ts';
import { useMeshNode } from '../support/mesh-node.ts';
import { BAD_ANNOTATION, BAD_VALUE, badAnnotationPod } from '../../hack/lib/mesh-pods.ts';

const notRoot = process.getuid?.() !== 0;
if (notRoot) console.warn('agent-lifecycle e2e skipped: needs root (network namespaces, iptables, cgroups)');

describe('agent settings', () => {
  it.each([
    [{ PNC_CONCURRENCY: '0' }, 'PNC_CONCURRENCY', '"0"'],
    [{ PNC_IPTABLES_MODE: 'iptables' }, 'PNC_IPTABLES_MODE', '"iptables"'],
    [{ PNC_EXCLUDE_OUTBOUND_CIDRS: '192.0.2.0/40' }, 'PNC_EXCLUDE_OUTBOUND_CIDRS', '"192.0.2.0/40"'],
    [{ NODE_NAME: '' }, 'NODE_NAME', '""'],
  ])('exits 2 on %j, naming the variable and the value', (env, variable, value) => {
    const result = spawnSync(process.execPath, [CONTROLLER_BUNDLE, 'run'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', KUBECONFIG: '/nonexistent', NODE_NAME: 'node-a', ...env },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(variable);
    expect(result.stderr).toContain(value);
  });

  it('exits 1 with a clear message when there are no credentials', () => {
    const result = spawnSync(process.execPath, [CONTROLLER_BUNDLE, 'run', '--http-port', '0', '--http-address', '127.0.0.1'], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', KUBECONFIG: '/nonexistent/kubeconfig', NODE_NAME: 'node-a', PNC_IPTABLES_MODE: 'nft' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(result.status).toBe(1);
    expect(result.stdout).toContain('/nonexistent/kubeconfig');
  });
});

describe.skipIf(notRoot)('agent lifecycle on a real control plane', () => {
  const { kubeconfig, nodeName, fixture } = useMeshNode('agent-lifecycle');
  let controller: ControllerProcess;
  let ns = '';

  beforeAll(async () => {
    ns = await fixture.namespace('agent-lifecycle');
    controller = await startController({ kubeconfig, nodeName });
  });

  afterAll(async () => {
    await controller?.stop('SIGTERM');
  });

  it('serves /healthz and every contract metric, with all outcomes present from the start', async () => {
    expect((await controller.get('/healthz')).status).toBe(200);
    const text = await controller.metrics();
    for (const outcome of ['initialized', 'verified', 'repaired', 'error', 'refused', 'invalid_annotation']) {
      expect(text).toContain(`pnc_pod_results_total{outcome="${outcome}"}`);
    }
    for (const name of ['pnc_mark_latency_seconds_bucket', 'pnc_queue_depth', 'process_resident_memory_bytes']) expect(text).toContain(name);
    // One LIST and one WATCH per resource so far: pods of this node only, namespaces shared.
    expect(metricValue(text, 'pnc_watch_requests_total', { resource: 'pods' })).toBeGreaterThanOrEqual(2);
    expect(metricValue(text, 'pnc_watch_requests_total', { resource: 'namespaces' })).toBeGreaterThanOrEqual(2);
    expect(metricValue(text, 'pnc_watch_restarts_total')).toBe(0);
  });

  it('aggregates a repeated Warning into one Event series instead of a new Event', async () => {
    const handle = await fixture.createPod(ns, badAnnotationPod('flapping', nodeName));
    await fixture.waitForMark(handle, (mark) => mark.state === 'error');
    await fixture.waitForEvent(handle, 'InvalidAnnotation');
    await fixture.annotate(handle, { [BAD_ANNOTATION]: '15020' });
    await fixture.waitForInitialized(handle);
    await fixture.annotate(handle, { [BAD_ANNOTATION]: BAD_VALUE });
    const broken = await fixture.waitForMark(handle, (mark) => mark.state === 'error');
    expect(broken.reason).toContain(BAD_ANNOTATION);
    expect(broken.reason).toContain(BAD_VALUE);
    let warnings = await fixture.podEvents(handle);
    for (let i = 0; i < 50 && !warnings.some((event) => event.series?.count === 2); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      warnings = await fixture.podEvents(handle);
    }
    const invalid = warnings.filter((event) => event.reason === 'InvalidAnnotation');
    expect(invalid).toHaveLength(1);
    expect(invalid[0]!.series?.count).toBe(2);
    expect(invalid[0]!.type).toBe('Warning');
    expect(invalid[0]!.reportingController).toBe('pod-network-controller.io/controller');
    expect(invalid[0]!.reportingInstance).toBe(nodeName);
  });

  it('drains and exits 0 on SIGTERM', async () => {
    const status = await controller.stop('SIGTERM');
    expect(status).toEqual({ code: 0, signal: null });
    expect(controller.logs.some((line) => line.msg === 'stopped')).toBe(true);
  });
});
