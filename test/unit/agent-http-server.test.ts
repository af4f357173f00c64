// The agent's probe server with the default address: the kubelet probes the pod's primary IP,
// which is IPv6 on an IPv6-primary node (the VM node is one), so it must answer on both families.
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../controller/src/agent/config.ts';
import { startHttpServer } from '../../controller/src/agent/http-server.ts';

describe('the agent HTTP server on the default address', () => {
  it('answers /healthz over IPv6 and IPv4 loopback', async () => {
    const { httpAddress } = parseConfig({ NODE_NAME: 'node-a' }, []);
    const server = await startHttpServer(httpAddress, 0, new Registry(), { healthy: () => true, notReady: () => undefined, details: () => [] });
    try {
      for (const host of ['[::1]', '127.0.0.1']) {
        const response = await fetch(`http://${host}:${server.port}/healthz`, { signal: AbortSignal.timeout(5_000) });
        expect(`${host} ${response.status} ${await response.text()}`).toBe(`${host} 200 ok\n`);
      }
    } finally {
      await server.close();
    }
  });
});
