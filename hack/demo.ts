// `npm run demo` (root): the product as a user runs it, on a real node here. Starts (or
// reuses) the local control plane with one real node (kubelet + containerd), builds the
// images from the Dockerfile and installs the shipped manifests (hack/local-cluster.sh
// deploy), then shows the DaemonSet's pod coming up, a mesh pod going Init:0/1 -> Running,
// its mark and Event, the rules in its sandbox netns, connections made from inside its
// containers (kubectl exec), the plain pod untouched, and timings. A cold first run builds
// the kubelet and the images first. A cluster the demo started is stopped at the end
// (--keep-cluster keeps it). `npm run demo -- --simulated` runs the fast path instead: no
// node and no images, the agent as a host process and simulated sandboxes.
import { AppsV1Api, CoreV1Api, EventsV1Api, KubeConfig } from '@kubernetes/client-node';
import type { V1Pod } from '@kubernetes/client-node';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseMark, STATUS_ANNOTATION } from '../controller/src/pod-contract/index.ts';
import type { Mark } from '../controller/src/pod-contract/index.ts';
import { planFromPod, verifyRedirect } from '../controller/src/redirect/index.ts';
import { waitForPodEvent } from './lib/kube-objects.ts';
import { check, finishDemo, indent, printNatRules, step } from './lib/demo-output.ts';
import { isLocalClusterRunning, stopLocalCluster } from './lib/local-cluster.ts';
import { pollUntil } from './lib/poll.ts';
import {
  APP_PORT,
  connectFromPod,
  deployOnRealNode,
  isReady,
  kubectl,
  meshNamespace,
  podNetns,
  podStatusText,
  standInPod,
  waitForInjection,
} from './lib/real-node.ts';
import { PROXY_UID, WAITER_CONTAINER } from './lib/mesh-pods.ts';
import { jumpRuleCounts, noRedirectRules } from './lib/redirect-probe.ts';

// The Debian packages both demos need (as root: installed, saying why; else one line naming the command).
if (spawnSync('bash', [fileURLToPath(new URL('install-deps.sh', import.meta.url))], { stdio: 'inherit' }).status !== 0) process.exit(1);

if (process.argv.includes('--simulated')) {
  await import('./demo-simulated.ts');
} else {
  await realNodeDemo();
}

async function realNodeDemo(): Promise<never> {
  if (process.getuid?.() !== 0) {
    console.error('npm run demo needs root: it runs a kubelet and containerd (npm run demo -- --simulated needs root too)');
    process.exit(2);
  }
  const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  const keepCluster = process.argv.includes('--keep-cluster');

  const started = performance.now();
  let exitCode = 0;
  // Known before anything starts, so a failure says truthfully what it leaves running. A control
  // plane that was already running is left running, with the node this adds.
  const clusterWasRunning = await isLocalClusterRunning();
  let core: CoreV1Api | undefined;
  let namespace: string | undefined;
  process.stdout.on('error', () => undefined);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: cleaning up`);
      const cleanups: Promise<unknown>[] = [];
      if (core && namespace) cleanups.push(core.deleteNamespace({ name: namespace }));
      if (!clusterWasRunning && !keepCluster) cleanups.push(stopLocalCluster());
      void Promise.allSettled(cleanups).then(() => process.exit(130));
    });
  }

  try {
    step('a real node (kubelet + containerd), the images from the Dockerfile, the product installed as shipped');
    const deployed = await deployOnRealNode((line) => console.log(`   ${line}`));
    const { cluster, node } = deployed;
    console.log(`   node ${node.name} Ready (${node.ips.join(', ')}; pods ${node.podCidrs.join(', ')}) after ${seconds(deployed.upMs)}`);
    console.log(`   product deployed after ${seconds(deployed.deployMs)}; KUBECONFIG=${cluster.kubeconfig}`);
    const kc = new KubeConfig();
    kc.loadFromFile(cluster.kubeconfig);
    core = kc.makeApiClient(CoreV1Api);
    const apps = kc.makeApiClient(AppsV1Api);
    const events = kc.makeApiClient(EventsV1Api);
    const k = (args: string[]) => kubectl(cluster.binDir, cluster.kubeconfig, args);

    const daemonSet = await apps.readNamespacedDaemonSet({ namespace: 'pod-network-controller', name: 'pod-network-controller' });
    const agents = await core.listNamespacedPod({ namespace: 'pod-network-controller', labelSelector: 'app.kubernetes.io/name=pod-network-controller' });
    const agent = agents.items.find(isReady);
    check(
      agent !== undefined,
      `DaemonSet ${daemonSet.metadata?.name}: ${daemonSet.status?.numberReady}/${daemonSet.status?.desiredNumberScheduled} pods Ready`,
    );
    const agentContainer = agent!.spec!.containers[0]!;
    console.log(`   pod ${agent!.metadata?.name} on ${agent!.spec?.nodeName}, image ${agentContainer.image}`);
    console.log(
      `   capabilities ${agentContainer.securityContext?.capabilities?.add?.join(', ')}; hostPID ${agent!.spec?.hostPID}; not privileged, read-only root`,
    );
    const readySince = agent!.status?.conditions?.find((c) => c.type === 'Ready')?.lastTransitionTime;
    if (readySince && agent!.metadata?.creationTimestamp) {
      console.log(
        `   created -> Ready: ${seconds(new Date(readySince).getTime() - new Date(agent!.metadata.creationTimestamp).getTime())} (whole seconds, as the API records them)`,
      );
    }

    namespace = `demo-${Date.now().toString(36)}`;
    step(`namespace ${namespace}: Pod Security "restricted", injection enabled`);
    await core.createNamespace({ body: meshNamespace(namespace) });
    await waitForInjection(core, namespace);
    console.log(`   the MutatingAdmissionPolicy injects ${WAITER_CONTAINER} into mesh pods here`);

    step('a plain pod, then a mesh pod (app + istio-proxy: the test-proxy image, which answers with the original destination)');
    const plain = await core.createNamespacedPod({ namespace, body: standInPod('plain-app', 'plain') });
    const plainReady = waitFor(core, namespace, 'plain-app', isReady, 60_000);
    const meshCreated = performance.now();
    const mesh = await core.createNamespacedPod({ namespace, body: standInPod('mesh-app', 'mesh') });
    console.log(`   injected init containers: ${(mesh.spec?.initContainers ?? []).map((c) => `${c.name} (${c.image})`).join(', ')}`);
    const timeline = await followPod(core, namespace, 'mesh-app', meshCreated, (line) => console.log(`   ${line}`));
    const meshPod = timeline.pod;
    await plainReady;
    const plainPod = await core.readNamespacedPod({ namespace, name: plain.metadata!.name! });

    step(`the mark on ${namespace}/mesh-app (annotation ${STATUS_ANNOTATION})`);
    const mark = parseMark(meshPod.metadata!.annotations![STATUS_ANNOTATION]!) as Mark;
    console.log(indent(JSON.stringify(mark, null, 2)));
    const meshIPs = (meshPod.status?.podIPs ?? []).map((ip) => ip.ip);
    const meshNetns = await podNetns(cluster.stateDir, meshIPs[0]!);
    check(
      mark.netns === meshNetns.inode,
      `mark.netns ${mark.netns} is the inode of the sandbox netns holding ${meshIPs[0]} (${meshNetns.path.split('/').pop()})`,
    );

    step('the Initialized Event (events.k8s.io/v1)');
    const event = await waitForPodEvent(events, { namespace, name: 'mesh-app', uid: meshPod.metadata!.uid! }, 'Initialized');
    console.log(
      indent(
        `type: ${event.type}   reason: ${event.reason}   reportingController: ${event.reportingController}   reportingInstance: ${event.reportingInstance}\nnote: ${event.note}`,
      ),
    );

    step("the rules in mesh-app's sandbox netns");
    const counts = await jumpRuleCounts(meshNetns.path);
    const v4Tool = counts.find((c) => c.tool.startsWith('iptables-') && c.outbound > 0)?.tool ?? 'iptables-nft-save';
    const mode = v4Tool.includes('legacy') ? 'legacy' : 'nft';
    await printNatRules(meshNetns.path, mode);
    const verified = await verifyRedirect(meshNetns.path, planFromPod(meshPod), { mode });
    check(verified.ok, `exactly the pod's plan, IPv4 and IPv6 (${mode} backend)${verified.ok ? '' : `:\n${verified.diff}`}`);

    step('connections from inside the containers (kubectl exec ... /test-proxy connect)');
    const plainIPs = (plainPod.status?.podIPs ?? []).map((ip) => ip.ip);
    const hostPort = (ip: string) => (ip.includes(':') ? `[${ip}]:${APP_PORT}` : `${ip}:${APP_PORT}`);
    const connect = async (pod: string, container: string, ip: string) => {
      const answer = await connectFromPod(k, namespace!, pod, container, ip, APP_PORT);
      console.log(`   ${pod}/${container} -> ${hostPort(ip)}  answered on :${answer.listener}, original destination ${answer.original}`);
      return answer;
    };
    for (const ip of plainIPs) {
      const answer = await connect('mesh-app', 'app', ip);
      check(
        answer.listener === 15001 && answer.original === hostPort(ip),
        `the app's outbound connection was redirected to the proxy (:15001), original destination kept`,
      );
    }
    const own = await connect('mesh-app', 'istio-proxy', plainIPs[0]!);
    check(own.listener === APP_PORT, `the proxy's own traffic (UID ${PROXY_UID}) goes out directly: answered by plain-app itself`);
    const inbound = await connect('plain-app', 'app', meshIPs[0]!);
    check(inbound.listener === 15006 && inbound.original === hostPort(meshIPs[0]!), "an inbound connection to mesh-app's app port lands on the proxy's :15006");

    step('the plain pod is untouched');
    const plainMark = plainPod.metadata?.annotations?.[STATUS_ANNOTATION];
    check(plainMark === undefined, 'no mark on plain-app');
    check((plainPod.spec?.initContainers ?? []).length === 0, 'no init container injected into plain-app');
    const plainNetns = await podNetns(cluster.stateDir, plainIPs[0]!);
    check(noRedirectRules(await jumpRuleCounts(plainNetns.path)), "no ISTIO_* chains in plain-app's netns (legacy or nft, IPv4 or IPv6)");
    const direct = await connect('plain-app', 'app', plainIPs[0]!);
    check(direct.listener === APP_PORT, 'plain-app connects directly');

    step("timings (mesh-app; this machine's clock for both the demo and the agent)");
    const markWritten = Date.parse(mark.at) - performance.timeOrigin - meshCreated;
    console.log(`   create -> mark written by the agent (mark.at):  ${seconds(markWritten)}`);
    if (timeline.markSeen !== undefined) console.log(`   create -> mark seen in the API:                 ${seconds(timeline.markSeen)}`);
    if (timeline.waiterDone !== undefined) console.log(`   create -> waiter exit seen:                     ${seconds(timeline.waiterDone)}`);
    console.log(`   create -> Ready:                                ${seconds(timeline.ready)}`);
    console.log(`   the agent's own measure (Initialized note):     ${event.note}`);
    console.log('   (npm run bench:node measures 30 pods of each kind and where the time goes)');
  } catch (error) {
    console.error(`\ndemo FAILED: ${error instanceof Error ? error.message : String(error)}`);
    exitCode = 1;
  } finally {
    step('cleanup');
    if (core && namespace) {
      await core.deleteNamespace({ name: namespace }).then(
        () => console.log(`   namespace ${namespace} deleted (its pods go with it)`),
        (error: unknown) => console.error(`   deleting namespace ${namespace} failed: ${String(error)}`),
      );
    }
  }
  return finishDemo({ exitCode, started, keep: clusterWasRunning || keepCluster, what: 'the cluster (with the product)' });
}

async function waitFor(core: CoreV1Api, namespace: string, name: string, done: (pod: V1Pod) => boolean, timeoutMs: number): Promise<V1Pod> {
  let pod: V1Pod | undefined;
  await pollUntil(
    async () => done((pod = await core.readNamespacedPod({ namespace, name }))),
    timeoutMs,
    () => `pod ${namespace}/${name} not done within ${timeoutMs} ms: ${pod ? podStatusText(pod) : 'never read'}`,
  );
  return pod!;
}

interface Timeline {
  pod: V1Pod;
  /** ms after create. */
  markSeen?: number;
  waiterDone?: number;
  ready: number;
}

/** Polls the pod every 50 ms until Ready, printing each change of its STATUS, its mark and its waiter's exit. */
async function followPod(core: CoreV1Api, namespace: string, name: string, createdAt: number, print: (line: string) => void): Promise<Timeline> {
  let last = '';
  let markSeen: number | undefined;
  let waiterDone: number | undefined;
  const deadline = createdAt + 120_000;
  for (;;) {
    const pod = await core.readNamespacedPod({ namespace, name });
    const elapsed = performance.now() - createdAt;
    const stamp = `+${(elapsed / 1000).toFixed(2)} s`.padStart(9);
    if (markSeen === undefined && pod.metadata?.annotations?.[STATUS_ANNOTATION]) {
      markSeen = elapsed;
      print(`${stamp}  marked by the agent (${STATUS_ANNOTATION})`);
    }
    const waiter = pod.status?.initContainerStatuses?.find((s) => s.name === WAITER_CONTAINER)?.state?.terminated;
    if (waiterDone === undefined && waiter) {
      waiterDone = elapsed;
      const message = (waiter.message ?? '').trim().split('\n').pop();
      print(`${stamp}  ${WAITER_CONTAINER} exited ${waiter.exitCode}${message ? `: ${message}` : ''}`);
    }
    const ready = isReady(pod);
    const status = `${podStatusText(pod)}${ready ? ' (Ready)' : ''}`;
    if (status !== last) print(`${stamp}  ${status}`);
    last = status;
    if (ready) return { pod, markSeen, waiterDone, ready: elapsed };
    if (performance.now() > deadline) throw new Error(`pod ${namespace}/${name} not Ready within 120 s: ${status}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
