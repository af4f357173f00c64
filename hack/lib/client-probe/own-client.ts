// bench:client probe: the agent's own informers (controller/src/kube), same two resources.
import { KubeClient } from '../../../controller/src/kube/kube-client.ts';
import { fromKubeconfigFile } from '../../../controller/src/kube/kubeconfig.ts';
import { NAMESPACE_KEYS } from '../../../controller/src/agent/namespace-keys.ts';
import { createNamespaceInformer } from '../../../controller/src/kube/namespace-informer.ts';
import { createPodInformer } from '../../../controller/src/kube/pod-informer.ts';
import { reportWhenSynced } from './report.ts';

const started = performance.now();
const [kubeconfig, nodeName] = process.argv.slice(2) as [string, string];
const client = new KubeClient(fromKubeconfigFile(kubeconfig));
const pods = createPodInformer(client, nodeName, {});
const namespaces = createNamespaceInformer(client, NAMESPACE_KEYS, {});
await Promise.all([pods.start(), namespaces.start()]);
await reportWhenSynced(started, () => pods.list().length);
