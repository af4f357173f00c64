// The agent's namespace informer against the real apiserver: it pages through more namespaces
// than one page holds and sees them all, as PartialObjectMetadata, each trimmed to the keys
// the agent reads; then it follows changes through its watch.
import { randomBytes } from 'node:crypto';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { BYPASS_POLICY_LABEL } from '../../controller/src/agent/bypass-audit.ts';
import { NAMESPACE_KEYS } from '../../controller/src/agent/namespace-keys.ts';
import { UID_RANGE_ANNOTATION } from '../../controller/src/agent/proxy-identity.ts';
import { KubeClient, type ListWatchTransport } from '../../controller/src/kube/kube-client.ts';
import { fromKubeconfigFile } from '../../controller/src/kube/kubeconfig.ts';
import { createNamespaceInformer } from '../../controller/src/kube/namespace-informer.ts';
import { INITIALIZE_ANNOTATION } from '../../controller/src/pod-contract/index.ts';
import { createNamespace, deleteNamespace } from '../../hack/lib/kube-objects.ts';
import { pollUntil } from '../../hack/lib/poll.ts';
import { adminKubeConfig } from '../support/cluster.ts';

const admin = adminKubeConfig();
const PAGE = 3;

async function openshiftLikeNamespace(name: string, annotations: Record<string, string> = {}): Promise<void> {
  onTestFinished(() => deleteNamespace(admin, name));
  await createNamespace(admin, name, {
    labels: { [BYPASS_POLICY_LABEL]: 'strict', 'pod-security.kubernetes.io/audit': 'restricted' },
    annotations: { [UID_RANGE_ANNOTATION]: '1000680000/10000', 'openshift.io/description': 'x'.repeat(500), ...annotations },
  });
}

describe('namespace informer on the real apiserver', () => {
  it('lists more than one page of namespaces, sees them all, metadata only and trimmed, and then watches', async () => {
    const suffix = randomBytes(3).toString('hex');
    const names = Array.from({ length: 2 * PAGE + 1 }, (_, i) => `pnc-ns-page-${suffix}-${i}`);
    for (const name of names) await openshiftLikeNamespace(name);

    const client = new KubeClient(fromKubeconfigFile(inject('kubeconfig')));
    onTestFinished(() => client.close());
    // What the server answered each LIST page with.
    const pages: { kind?: string; items: number }[] = [];
    const transport: ListWatchTransport = {
      list: async <T>(path: string, onItem: (item: T) => void, accept?: string) => {
        let items = 0;
        const head = await client.list<T>(
          path,
          (item) => {
            items++;
            onItem(item);
          },
          accept,
        );
        pages.push({ kind: head.kind, items });
        return head;
      },
      watch: (path, handlers, signal, accept) => client.watch(path, handlers, signal, accept),
    };
    const informer = createNamespaceInformer(transport, NAMESPACE_KEYS, {}, PAGE);
    onTestFinished(() => informer.stop());
    await informer.start();

    expect(informer.synced).toBe(true);
    const listed = new Set([...informer.keys()].map((key) => key.slice(1)));
    for (const name of [...names, 'default', 'kube-system']) expect(listed.has(name), name).toBe(true);
    const total = pages.reduce((sum, page) => sum + page.items, 0);
    expect(total).toBeGreaterThan(2 * PAGE);
    expect(pages.map((page) => page.items)).toEqual(Array.from({ length: Math.ceil(total / PAGE) }, (_, i) => Math.min(PAGE, total - i * PAGE)));
    expect(new Set(pages.map((page) => page.kind))).toEqual(new Set(['PartialObjectMetadataList']));
    expect(informer.get(names[0]!)).toEqual({
      metadata: { name: names[0], labels: { [BYPASS_POLICY_LABEL]: 'strict' }, annotations: { [UID_RANGE_ANNOTATION]: '1000680000/10000' } },
    });
    expect(informer.get('default')).toEqual({ metadata: { name: 'default' } });

    // A namespace made after the list arrives through the watch, trimmed as well.
    const late = `pnc-ns-page-${suffix}-late`;
    await openshiftLikeNamespace(late, { [INITIALIZE_ANNOTATION]: 'true' });
    await pollUntil(
      async () => informer.get(late) !== undefined,
      15_000,
      () => `${late} not seen through the watch`,
    );
    expect(informer.get(late)?.metadata?.annotations).toEqual({ [UID_RANGE_ANNOTATION]: '1000680000/10000', [INITIALIZE_ANNOTATION]: 'true' });
  });
});
