// A describe block's simulated node on the shared test cluster: a MeshFixture whose Node
// object is created before the block's own beforeAll hooks, and which is cleaned up (Node
// included) after the block's own afterAll hooks (vitest runs after-hooks in reverse
// order), so an agent the block started is stopped before its pods and sandboxes go.
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, inject } from 'vitest';
import { MeshFixture } from '../../hack/lib/mesh-fixture.ts';

export interface MeshNode {
  kubeconfig: string;
  kc: KubeConfig;
  nodeName: string;
  fixture: MeshFixture;
}

export function useMeshNode(name: string): MeshNode {
  const kubeconfig = inject('kubeconfig');
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  const nodeName = `node-${name}-${process.pid}`;
  const fixture = new MeshFixture(kc, nodeName);
  beforeAll(() => fixture.createNode());
  afterAll(() => fixture.cleanup());
  return { kubeconfig, kc, nodeName, fixture };
}
