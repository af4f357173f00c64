// bench:client probe: what the agent's two informers would be with client-node's ListWatch
// (node-scoped pods + namespaces). Prints one JSON line once both lists are in and settled.
import { CoreV1Api, KubeConfig, ListWatch, Watch } from '@kubernetes/client-node';
import { reportWhenSynced } from './report.ts';

const started = performance.now();
const [kubeconfig, nodeName] = process.argv.slice(2) as [string, string];
const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
const core = kc.makeApiClient(CoreV1Api);
const watch = new Watch(kc);
const fieldSelector = `spec.nodeName=${nodeName}`;
const pods = new ListWatch('/api/v1/pods', watch, () => core.listPodForAllNamespaces({ fieldSelector }), false, undefined, fieldSelector);
const namespaces = new ListWatch('/api/v1/namespaces', watch, () => core.listNamespace(), false);
for (const informer of [pods, namespaces]) informer.on('error', (error) => console.error(String(error)));
await Promise.all([pods.start(), namespaces.start()]);
await reportWhenSynced(started, () => pods.list().length);
