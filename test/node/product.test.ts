// The product on a real node, installed as a user would (the node global setup runs
// hack/local-cluster.sh deploy): the DaemonSet's agent, the admission-policy injection of the
// init-waiter, real pods from the images built from our Dockerfile, real sandbox netns.
import { AppsV1Api, BatchV1Api, CoreV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ownerOfCgroupFile } from '../../controller/src/agent/cgroup-path.ts';
import { NetnsFinder } from '../../controller/src/agent/netns-finder.ts';
import { STATUS_ANNOTATION, parseMark } from '../../controller/src/pod-contract/index.ts';
import type { Mark } from '../../controller/src/pod-contract/index.ts';
import { rebootLocalNode } from '../../hack/lib/local-cluster.ts';
import { APP_PORT, connectFromPod, isReady, kubectl, meshNamespace, podNetns, standInPod, waitForInjection } from '../../hack/lib/real-node.ts';
import { WAITER_CONTAINER } from '../../hack/lib/mesh-pods.ts';
import { adminKubeConfig, freshNamespace } from '../support/cluster.ts';
import { runInNetns } from '../../hack/lib/netns.ts';
import { pollFor } from '../../hack/lib/poll.ts';

const nodeName = inject('nodeName');
const clusterDir = inject('clusterDir');
const AGENT_NAMESPACE = 'pod-network-controller';
const AGENT_SELECTOR = 'app.kubernetes.io/name=pod-network-controller';

const execFileAsync = promisify(execFile);
const k = (args: string[], timeoutMs?: number) => kubectl(inject('binDir'), inject('kubeconfig'), args, timeoutMs);

const poll = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 90_000) => pollFor(what, probe, timeoutMs);

function markOf(pod: V1Pod): Mark | undefined {
  const text = pod.metadata?.annotations?.[STATUS_ANNOTATION];
  return text === undefined ? undefined : parseMark(text);
}

/** The reasons of the pod's Events, in order, one entry per occurrence. */
async function eventReasons(kc: KubeConfig, namespace: string, name: string): Promise<string[]> {
  const events = await kc.makeApiClient(CoreV1Api).listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` });
  return events.items.flatMap((e) => Array<string>(e.count ?? 1).fill(e.reason ?? ''));
}

/** A Deployment of stand-in pods of KIND (mesh: app + istio-proxy, which the policy gives the waiter). */
async function createDeployment(kc: KubeConfig, namespace: string, name: string, kind: 'mesh' | 'plain', replicas = 1, pod = standInPod(name, kind)) {
  const labels = { app: name };
  await kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
    namespace,
    body: {
      metadata: { name },
      spec: { replicas, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: pod.spec! } },
    },
  });
}

async function podsOf(kc: KubeConfig, namespace: string, app: string): Promise<V1Pod[]> {
  const pods = await kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace, labelSelector: `app=${app}` });
  return pods.items.filter((p) => !p.metadata?.deletionTimestamp);
}

async function readyPods(kc: KubeConfig, namespace: string, app: string, count: number, timeoutMs = 120_000): Promise<V1Pod[]> {
  return poll(
    `${count} Ready pods of ${app} in ${namespace}`,
    async () => {
      const pods = (await podsOf(kc, namespace, app)).filter(isReady);
      return pods.length === count ? pods : undefined;
    },
    timeoutMs,
  );
}

/** Deletes the Deployment and waits until its pods are gone, so the next test starts on an idle node. */
async function removeDeployment(kc: KubeConfig, namespace: string, name: string): Promise<void> {
  await kc
    .makeApiClient(AppsV1Api)
    .deleteNamespacedDeployment({ namespace, name, propagationPolicy: 'Foreground' })
    .catch(() => undefined);
  await poll(`the pods of ${name} to be gone`, async () => {
    const pods = await kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace, labelSelector: `app=${name}` });
    return pods.items.length === 0 ? true : undefined;
  });
}

/** The agent pods on our node (a fake Node gets its own, which never runs). */
async function agentPods(kc: KubeConfig): Promise<V1Pod[]> {
  const pods = await kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: AGENT_NAMESPACE, labelSelector: AGENT_SELECTOR });
  return pods.items.filter((p) => p.spec?.nodeName === nodeName);
}

const connectFrom = (namespace: string, pod: string, container: string, address: string, port: number) =>
  connectFromPod(k, namespace, pod, container, address, port);

async function natRules(clusterStateDir: string, podIP: string): Promise<string> {
  const { path } = await podNetns(clusterStateDir, podIP);
  return runInNetns(path, ['iptables-save', '-t', 'nat']).stdout + runInNetns(path, ['ip6tables-save', '-t', 'nat']).stdout;
}

function patchAgentDaemonSet(type: 'merge' | 'json', patch: string): Promise<string> {
  return k(['-n', AGENT_NAMESPACE, 'patch', 'daemonset', 'pod-network-controller', `--type=${type}`, '-p', patch]);
}

const NO_AGENT_LABEL = 'pnc-test/no-agent';

/** Takes the agent off the node (a nodeSelector term nothing matches) and waits until its pod is gone. */
async function stopAgent(kc: KubeConfig): Promise<void> {
  await patchAgentDaemonSet('merge', JSON.stringify({ spec: { template: { spec: { nodeSelector: { [NO_AGENT_LABEL]: 'true' } } } } }));
  await poll('the agent pod to be gone', async () => ((await agentPods(kc)).length === 0 ? true : undefined));
}

async function startAgent(kc: KubeConfig): Promise<void> {
  await patchAgentDaemonSet('json', JSON.stringify([{ op: 'remove', path: `/spec/template/spec/nodeSelector/${NO_AGENT_LABEL.replace('/', '~1')}` }]));
  await poll('the agent pod to be Ready', async () => ((await agentPods(kc)).some(isReady) ? true : undefined), 120_000);
}

describe.skipIf(!nodeName)('the product on a real node (skipped without root: no real node)', () => {
  let kc: KubeConfig;
  let mesh: string;
  beforeAll(async () => {
    kc = adminKubeConfig();
    mesh = await freshNamespace(kc, meshNamespace('').metadata.labels);
    await waitForInjection(kc.makeApiClient(CoreV1Api), mesh);
  });
  afterAll(async () => {
    // A failed test must not leave the agent off for the next.
    const daemonSet = await kc.makeApiClient(AppsV1Api).readNamespacedDaemonSet({ namespace: AGENT_NAMESPACE, name: 'pod-network-controller' });
    if (daemonSet.spec?.template.spec?.nodeSelector?.[NO_AGENT_LABEL]) await startAgent(kc);
  });

  it("runs the DaemonSet's agent Ready on the node, with a token whose node claim is the node's and only its four capabilities", async () => {
    const [agent, ...others] = await agentPods(kc);
    expect(others).toEqual([]);
    expect(isReady(agent!)).toBe(true);
    expect(agent!.spec?.nodeName).toBe(nodeName);
    // The kubelet's projected token, as the agent reads it.
    const volumes = join(clusterDir, 'node/kubelet/root/pods', agent!.metadata!.uid!, 'volumes/kubernetes.io~projected');
    const [tokenVolume] = (await readdir(volumes)).filter((name) => name.startsWith('kube-api-access-'));
    const token = await readFile(join(volumes, tokenVolume!, 'token'), 'utf8');
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as {
      'kubernetes.io': { node: { name: string }; pod: { uid: string } };
    };
    expect(claims['kubernetes.io'].node.name).toBe(nodeName);
    expect(claims['kubernetes.io'].pod.uid).toBe(agent!.metadata!.uid);

    // Under the real runtime the agent's process has exactly its four capabilities, and no_new_privs.
    const statuses: string[] = [];
    for (const pid of await readdir('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const cgroup = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
      if (ownerOfCgroupFile(cgroup)?.podUid !== agent!.metadata!.uid) continue;
      const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmdline.includes('controller.js')) statuses.push(await readFile(`/proc/${pid}/status`, 'utf8'));
    }
    expect(statuses.length).toBeGreaterThan(0);
    const capability = { NET_ADMIN: 12n, NET_RAW: 13n, SYS_PTRACE: 19n, SYS_ADMIN: 21n };
    const expected = Object.values(capability).reduce((bits, bit) => bits | (1n << bit), 0n);
    for (const status of statuses) {
      expect(BigInt(`0x${/^CapEff:\s+([0-9a-f]+)$/m.exec(status)![1]}`)).toBe(expected);
      expect(/^NoNewPrivs:\s+(\d)$/m.exec(status)![1]).toBe('1');
      expect(/^Uid:\s+0\s/m.test(status)).toBe(true);
    }
  });

  it('schedules the agent on Linux nodes only: a Windows node gets no agent pod to hold the rollout', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const fakes = { linux: `pnc-linux-${mesh}`, windows: `pnc-windows-${mesh}` };
    // A DaemonSet pod names its node in a nodeAffinity term and gets spec.nodeName only when bound,
    // which a fake node without capacity never allows.
    const targetNode = (pod: V1Pod) =>
      pod.spec?.nodeName ??
      pod.spec?.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms[0]?.matchFields?.[0]?.values?.[0];
    const onNode = async (node: string) =>
      (await core.listNamespacedPod({ namespace: AGENT_NAMESPACE, labelSelector: AGENT_SELECTOR })).items.filter((p) => targetNode(p) === node);
    try {
      for (const [os, name] of Object.entries(fakes)) await core.createNode({ body: { metadata: { name, labels: { 'kubernetes.io/os': os } } } });
      // The DaemonSet controller has acted on both nodes once the Linux one has its (never running) pod.
      await poll('an agent pod for the Linux node', async () => ((await onNode(fakes.linux)).length === 1 ? true : undefined));
      expect(await onNode(fakes.windows)).toEqual([]);
      const daemonSet = await kc.makeApiClient(AppsV1Api).readNamespacedDaemonSet({ namespace: AGENT_NAMESPACE, name: 'pod-network-controller' });
      expect(daemonSet.status?.desiredNumberScheduled).toBe(2);
    } finally {
      for (const name of Object.values(fakes)) await core.deleteNode({ name }).catch(() => undefined);
      await poll("the fake nodes' agent pods to be gone", async () => ((await onNode(fakes.linux)).length === 0 ? true : undefined));
    }
  });

  it('holds a mesh pod in Init:0/1 without an agent, marks it for its real netns once one runs, then it is Ready; a pod of another node stays unmarked', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    // A pod bound to another node: this node's agent must leave it alone.
    const elsewhere = `pnc-elsewhere-${mesh}`;
    await core.createNode({ body: { metadata: { name: elsewhere } } });
    try {
      await core.createNamespacedPod({
        namespace: mesh,
        body: { ...standInPod('elsewhere', 'mesh'), spec: { ...standInPod('elsewhere', 'mesh').spec!, nodeName: elsewhere } },
      });
      await stopAgent(kc);
      await createDeployment(kc, mesh, 'held', 'mesh');
      const held = await poll('the mesh pod to run its waiter', async () => {
        const [pod] = await podsOf(kc, mesh, 'held');
        return pod?.status?.initContainerStatuses?.find((s) => s.name === WAITER_CONTAINER)?.state?.running ? pod : undefined;
      });
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      const stillHeld = await core.readNamespacedPod({ namespace: mesh, name: held.metadata!.name! });
      expect(markOf(stillHeld)).toBeUndefined();
      expect(stillHeld.status?.initContainerStatuses?.[0]?.state?.running).toBeDefined();
      expect(stillHeld.status?.containerStatuses?.every((s) => s.state?.waiting?.reason === 'PodInitializing')).toBe(true);
      expect(await k(['-n', mesh, 'get', 'pod', held.metadata!.name!, '--no-headers'])).toMatch(/\s0\/2\s+Init:0\/1\s/);

      await startAgent(kc);
      const [ready] = await readyPods(kc, mesh, 'held', 1);
      const mark = markOf(ready!)!;
      expect(mark.state).toBe('initialized');
      const sandbox = await podNetns(clusterDir, ready!.status!.podIP!);
      expect(mark.netns).toBe(sandbox.inode);
      // The app started only after the mark (the waiter exits once it sees it).
      const waiterDone = new Date(ready!.status!.initContainerStatuses![0]!.state!.terminated!.finishedAt!).getTime();
      expect(waiterDone).toBeGreaterThanOrEqual(Math.floor(new Date(mark.at).getTime() / 1000) * 1000);
      expect(await eventReasons(kc, mesh, ready!.metadata!.name!)).toContain('Initialized');
      expect(markOf(await core.readNamespacedPod({ namespace: mesh, name: 'elsewhere' }))).toBeUndefined();
    } finally {
      await core.deleteNamespacedPod({ namespace: mesh, name: 'elsewhere', gracePeriodSeconds: 0 }).catch(() => undefined);
      await core.deleteNode({ name: elsewhere }).catch(() => undefined);
      await removeDeployment(kc, mesh, 'held');
    }
  });

  it("completes a Job whose restartPolicy Never mesh pod waits 30 s for a late agent: the waiter, told the pod's restart policy, neither times out nor gives up", async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const batch = kc.makeApiClient(BatchV1Api);
    const name = 'late-agent';
    const { containers, ...spec } = standInPod(name, 'mesh').spec!;
    const app = containers.find((c) => c.name === 'app')!;
    const proxy = containers.find((c) => c.name === 'istio-proxy')!;
    await stopAgent(kc);
    try {
      await batch.createNamespacedJob({
        namespace: mesh,
        body: {
          metadata: { name },
          spec: {
            // One failed pod fails the Job: a waiter that gave up would end it.
            backoffLimit: 0,
            template: {
              metadata: { labels: { app: name } },
              spec: {
                ...spec,
                restartPolicy: 'Never',
                // A native sidecar: a classic one never exits, and the Job would never complete.
                initContainers: [{ ...proxy, restartPolicy: 'Always' }],
                // Done once its connection went through the redirect to the proxy, which answers.
                containers: [{ ...app, args: ['connect', '203.0.113.250', '80'] }],
              },
            },
          },
        },
      });
      const waiting = await poll('the Job pod to run its waiter', async () => {
        const [pod] = await podsOf(kc, mesh, name);
        return pod?.status?.initContainerStatuses?.find((s) => s.name === WAITER_CONTAINER)?.state?.running ? pod : undefined;
      });
      const podName = waiting.metadata!.name!;
      expect(waiting.spec?.initContainers?.map((c) => c.name)).toEqual([WAITER_CONTAINER, 'istio-proxy']);
      expect(waiting.spec?.initContainers?.[0]?.env).toEqual([{ name: 'PNC_WAITER_RESTART_POLICY', value: 'Never' }]);
      // Twice the error grace of a pod that is restarted, six times istio-validation's 5 s.
      await new Promise((resolve) => setTimeout(resolve, 30_000));
      const held = await core.readNamespacedPod({ namespace: mesh, name: podName });
      expect(held.status?.phase).toBe('Pending');
      const waiter = held.status?.initContainerStatuses?.find((s) => s.name === WAITER_CONTAINER);
      expect(waiter?.state?.running).toBeDefined();
      expect(waiter?.restartCount).toBe(0);

      await startAgent(kc);
      const job = await poll(
        'the Job to complete',
        async () => {
          const current = await batch.readNamespacedJob({ namespace: mesh, name });
          if (current.status?.failed) throw new Error(`the Job failed: ${JSON.stringify(current.status)}`);
          return current.status?.succeeded === 1 ? current : undefined;
        },
        120_000,
      );
      expect(job.status?.failed ?? 0).toBe(0);
      const done = await core.readNamespacedPod({ namespace: mesh, name: podName });
      expect(done.status?.phase).toBe('Succeeded');
      expect(markOf(done)?.state).toBe('initialized');
      const log = await k(['-n', mesh, 'logs', podName, '-c', WAITER_CONTAINER]);
      expect(log).toMatch(/; no timeout, error marks waited out \(restartPolicy Never: a failed init container fails the pod\)$/m);
      expect(log).toMatch(/still waiting: /);
      expect(log).toMatch(/\] ready: .*\(exit 0,/);
    } finally {
      const daemonSet = await kc.makeApiClient(AppsV1Api).readNamespacedDaemonSet({ namespace: AGENT_NAMESPACE, name: 'pod-network-controller' });
      if (daemonSet.spec?.template.spec?.nodeSelector?.[NO_AGENT_LABEL]) await startAgent(kc);
      await batch.deleteNamespacedJob({ namespace: mesh, name, propagationPolicy: 'Foreground' }).catch(() => undefined);
      await poll(`the pods of ${name} to be gone`, async () => {
        const pods = await core.listNamespacedPod({ namespace: mesh, labelSelector: `app=${name}` });
        return pods.items.length === 0 ? true : undefined;
      });
    }
  });

  it('redirects the app container: outbound to the proxy with the original destination (IPv4, IPv6), inbound to 15006, the proxy itself not looped; a plain pod is untouched', async () => {
    await createDeployment(kc, mesh, 'traffic', 'mesh');
    await createDeployment(kc, mesh, 'plain', 'plain');
    const [meshPod] = await readyPods(kc, mesh, 'traffic', 1);
    const [plainPod] = await readyPods(kc, mesh, 'plain', 1);
    const meshName = meshPod!.metadata!.name!;
    const plainName = plainPod!.metadata!.name!;

    expect(await connectFrom(mesh, meshName, 'app', '198.51.100.230', 80)).toMatchObject({ listener: 15001, original: '198.51.100.230:80' });
    expect(await connectFrom(mesh, meshName, 'app', '2001:db8:adf::77', 80)).toMatchObject({ listener: 15001, original: '[2001:db8:adf::77]:80' });
    // Inbound from another pod, over the bridge.
    const meshIP = meshPod!.status!.podIP!;
    expect(await connectFrom(mesh, plainName, 'app', meshIP, APP_PORT)).toMatchObject({ listener: 15006, original: `${meshIP}:${APP_PORT}` });
    const meshIPv6 = meshPod!.status!.podIPs!.find((ip) => ip.ip.includes(':'))!.ip;
    expect(await connectFrom(mesh, plainName, 'app', meshIPv6, APP_PORT)).toMatchObject({ listener: 15006, original: `[${meshIPv6}]:${APP_PORT}` });
    // The proxy's own connection goes where it was sent: the plain pod's app answers itself.
    const plainIP = plainPod!.status!.podIP!;
    expect(await connectFrom(mesh, meshName, 'istio-proxy', plainIP, APP_PORT)).toMatchObject({ listener: APP_PORT, original: `${plainIP}:${APP_PORT}` });

    // The plain pod: no mark, no rules, and its app answers for itself.
    expect(markOf(plainPod!)).toBeUndefined();
    expect(await natRules(clusterDir, plainIP)).not.toMatch(/ISTIO_/);
    expect(await natRules(clusterDir, meshIP)).toMatch(/ISTIO_OUTPUT/);
    expect(await connectFrom(mesh, plainName, 'app', '198.51.100.230', 80).catch((error: Error) => error.message)).toMatch(/connect 198\.51\.100\.230 port 80/);
    await removeDeployment(kc, mesh, 'traffic');
    await removeDeployment(kc, mesh, 'plain');
  });

  it('re-programs a pod once per reinit token', async () => {
    await createDeployment(kc, mesh, 'reinit', 'mesh');
    const [pod] = await readyPods(kc, mesh, 'reinit', 1);
    const name = pod!.metadata!.name!;
    await k(['-n', mesh, 'annotate', 'pod', name, 'pod-network-controller.io/reinit=first']);
    const core = kc.makeApiClient(CoreV1Api);
    await poll('the reinit token in the mark', async () =>
      markOf(await core.readNamespacedPod({ namespace: mesh, name }))?.reinit === 'first' ? true : undefined,
    );
    // Another update of the pod with the same token changes nothing.
    await k(['-n', mesh, 'label', 'pod', name, 'touched=yes']);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const reasons = await eventReasons(kc, mesh, name);
    expect(reasons.filter((r) => r === 'Reinitialized')).toHaveLength(1);
    expect(reasons.filter((r) => r === 'Initialized')).toHaveLength(1);
    await removeDeployment(kc, mesh, 'reinit');
  });

  it('initializes each of 20 pods exactly once, none running its app unmarked, while the agent pod is deleted during the scale-up', async () => {
    // Twenty mesh pods fit on this 2-CPU node as injected: the waiter requests 10m CPU (limit 500m).
    const burst = await freshNamespace(kc, meshNamespace('').metadata.labels);
    await waitForInjection(kc.makeApiClient(CoreV1Api), burst);
    await createDeployment(kc, burst, 'burst', 'mesh', 0);
    await k(['-n', burst, 'scale', 'deployment', 'burst', '--replicas=20']);
    const [agent] = await agentPods(kc);
    await k(['-n', AGENT_NAMESPACE, 'delete', 'pod', agent!.metadata!.name!, '--wait=false']);
    const pods = await poll(
      '20 Ready burst pods',
      async () => {
        const current = await podsOf(kc, burst, 'burst');
        for (const pod of current) {
          const appRunning = pod.status?.containerStatuses?.some((s) => s.name === 'app' && (s.state?.running || s.state?.terminated));
          if (appRunning) expect(markOf(pod)?.state, `${pod.metadata!.name} runs its app`).toBe('initialized');
        }
        return current.length === 20 && current.every(isReady) ? current : undefined;
      },
      300_000,
    );
    for (const pod of pods) {
      const reasons = await eventReasons(kc, burst, pod.metadata!.name!);
      expect(
        reasons.filter((r) => r === 'Initialized' || r === 'Repaired' || r === 'Reinitialized'),
        pod.metadata!.name,
      ).toEqual(['Initialized']);
      const mark = markOf(pod)!;
      expect(mark.netns).toBe((await podNetns(clusterDir, pod.status!.podIP!)).inode);
      const waiter = pod.status!.initContainerStatuses![0]!.state!.terminated!;
      expect(new Date(waiter.finishedAt!).getTime()).toBeGreaterThanOrEqual(Math.floor(new Date(mark.at).getTime() / 1000) * 1000);
    }
    await removeDeployment(kc, burst, 'burst');
  }, 420_000);

  it("refuses an app container running as the proxy UID: the pod stays in Init, the refusal in describe (Events, the waiter's termination message) and the waiter log", async () => {
    const refused = standInPod('refused', 'mesh');
    const app = refused.spec!.containers.find((c) => c.name === 'app')!;
    app.securityContext = { ...app.securityContext, runAsUser: 1337, runAsGroup: 1337 };
    await kc.makeApiClient(CoreV1Api).createNamespacedPod({ namespace: mesh, body: refused });
    const core = kc.makeApiClient(CoreV1Api);
    await poll('the refusal Event', async () => ((await eventReasons(kc, mesh, 'refused')).includes('ProxyIdentityRefused') ? true : undefined));
    const pod = await core.readNamespacedPod({ namespace: mesh, name: 'refused' });
    expect(markOf(pod)?.state).toBe('error');
    expect(isReady(pod)).toBe(false);
    // No app container running (the kubelet may not have reported any container status yet).
    expect(pod.status?.containerStatuses?.some((s) => s.state?.running) ?? false).toBe(false);
    // The refusal as users look for it: the Warning in describe, the waiter's log saying why it waits.
    const text = await k(['-n', mesh, 'describe', 'pod', 'refused']);
    expect(text).toMatch(/Warning\s+ProxyIdentityRefused\s.*refused: container "app" runAsUser=1337/);
    expect(text).toMatch(/Status:\s+Pending/);
    const logs = await poll('the refusal in the waiter log', async () => {
      const out = await k(['-n', mesh, 'logs', 'refused', '-c', WAITER_CONTAINER]).catch(() => '');
      return out.includes('is error: refused') ? out : undefined;
    });
    expect(logs).toMatch(/equals the proxy identity \(uid 1337, gid 1337\)/);
    // After the error grace (15 s) the waiter exits 4 with the mark's reason as its termination
    // message, which describe shows; the kubelet restarts it, and the app never starts.
    const described = await poll(
      "the waiter's termination message in describe",
      async () => {
        const out = await k(['-n', mesh, 'describe', 'pod', 'refused']);
        return /Message:\s+gave up after 15 s of an error mark/.test(out) ? out : undefined;
      },
      60_000,
    );
    expect(described).toMatch(
      /Message:\s+gave up after 15 s of an error mark: pod-network-controller\.io\/status is error: refused: container "app" runAsUser=1337.* equals the proxy identity \(uid 1337, gid 1337\)/,
    );
    expect(described).toMatch(/Exit Code:\s+4\b/);
    const waiterStatus = (await core.readNamespacedPod({ namespace: mesh, name: 'refused' })).status?.initContainerStatuses?.[0];
    const terminated = waiterStatus?.state?.terminated ?? waiterStatus?.lastState?.terminated;
    expect(terminated?.exitCode).toBe(4);
    expect(terminated?.message).toMatch(/^gave up after 15 s of an error mark: .* is error: refused: container "app" runAsUser=1337/);
    expect((await core.readNamespacedPod({ namespace: mesh, name: 'refused' })).status?.containerStatuses?.some((s) => s.state?.running) ?? false).toBe(false);
    await core.deleteNamespacedPod({ namespace: mesh, name: 'refused', gracePeriodSeconds: 0 });
  });

  it('re-marks pods for their new netns after a node reboot, before their apps start again', async () => {
    await createDeployment(kc, mesh, 'reboot', 'mesh', 2);
    const before = await readyPods(kc, mesh, 'reboot', 2);
    const oldNetns = new Map(before.map((p) => [p.metadata!.name!, markOf(p)!.netns]));
    await rebootLocalNode({ stateDir: clusterDir });
    const after = await poll(
      'both pods Ready in new sandboxes',
      async () => {
        const pods = await podsOf(kc, mesh, 'reboot');
        const renewed = pods.filter((p) => isReady(p) && markOf(p)?.netns !== oldNetns.get(p.metadata!.name!));
        return renewed.length === 2 ? renewed : undefined;
      },
      180_000,
    );
    for (const pod of after) {
      expect(oldNetns.has(pod.metadata!.name!), 'the same pod, not a replacement').toBe(true);
      expect(markOf(pod)!.netns).toBe((await podNetns(clusterDir, pod.status!.podIP!)).inode);
      // The waiter ran again in the new sandbox and let the app start only after the new mark.
      const waiter = pod.status!.initContainerStatuses![0]!.state!.terminated!;
      expect(new Date(waiter.finishedAt!).getTime()).toBeGreaterThanOrEqual(Math.floor(new Date(markOf(pod)!.at).getTime() / 1000) * 1000);
    }
    await removeDeployment(kc, mesh, 'reboot');
  }, 300_000);

  it('answers the README troubleshooting commands: events, waiter logs, the agent, metrics through port-forward, verify through kubectl exec', async () => {
    await createDeployment(kc, mesh, 'trouble', 'mesh');
    const [pod] = await readyPods(kc, mesh, 'trouble', 1);
    const name = pod!.metadata!.name!;
    expect(await k(['events', '-n', mesh, '--for', `pod/${name}`])).toMatch(/Initialized/);
    expect(await k(['get', 'pod', '-n', mesh, name, '-o', 'jsonpath={.metadata.annotations.pod-network-controller\\.io/status}'])).toMatch(
      /"state":"initialized"/,
    );
    expect(await k(['logs', '-n', mesh, name, '-c', WAITER_CONTAINER])).not.toBe('');
    const agent = (
      await k([
        '-n',
        AGENT_NAMESPACE,
        'get',
        'pod',
        '-l',
        AGENT_SELECTOR,
        '--field-selector',
        `spec.nodeName=${nodeName}`,
        '-o',
        'jsonpath={.items[0].metadata.name}',
      ])
    ).trim();
    expect(agent).not.toBe('');
    expect(await k(['-n', AGENT_NAMESPACE, 'logs', agent])).not.toBe('');

    // Metrics through port-forward, on a free local port.
    const forward = spawn(join(inject('binDir'), 'kubectl'), ['-n', AGENT_NAMESPACE, 'port-forward', `pod/${agent}`, ':9102'], {
      env: { ...process.env, KUBECONFIG: inject('kubeconfig') },
    });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        forward.stdout.on('data', (chunk: Buffer) => {
          const match = /127\.0\.0\.1:(\d+) -> 9102/.exec(chunk.toString());
          if (match) resolve(Number(match[1]));
        });
        forward.once('exit', (code) => reject(new Error(`kubectl port-forward exited ${code}`)));
      });
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/^pnc_/m);
    } finally {
      forward.kill();
    }

    // verify from the agent, with the sandbox PID found on the node by crictl as written.
    const crictl = async (args: string[]) =>
      (
        await execFileAsync(join(inject('binDir'), 'crictl'), args, {
          env: { ...process.env, CONTAINER_RUNTIME_ENDPOINT: `unix://${inject('criSocket')}` },
        })
      ).stdout.trim();
    const sandboxId = await crictl(['pods', '--namespace', mesh, '--name', name, '--state', 'ready', '-q']);
    const found = await new NetnsFinder({ procRoot: '/proc' }).find(pod!.metadata!.uid!, 0);
    let pid: string;
    if (inject('nodeRuntime') === 'cri-o') {
      // CRI-O drops the infra container: no sandbox PID, so a container's, as docs/operating.md says.
      const appId = await crictl(['ps', '--pod', sandboxId, '--name', 'app', '-q']);
      pid = await crictl(['inspect', '-o', 'go-template', '--template', '{{.info.pid}}', appId]);
      expect(found?.inode).toBe((await stat(`/proc/${pid}/ns/net`)).ino);
    } else {
      pid = await crictl(['inspectp', '-o', 'go-template', '--template', '{{.info.pid}}', sandboxId]);
      expect(found?.pid).toBe(Number(pid));
    }
    const yaml = await k(['get', 'pod', '-n', mesh, name, '-o', 'yaml']);
    const verify = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = execFile(
        join(inject('binDir'), 'kubectl'),
        ['-n', AGENT_NAMESPACE, 'exec', '-i', agent, '--', 'node', '/app/controller.js', 'verify', '--netns', `/proc/${pid}/ns/net`, '--pod', '/dev/stdin'],
        { env: { ...process.env, KUBECONFIG: inject('kubeconfig') } },
        (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
      );
      child.stdin!.end(yaml);
    });
    expect(verify, verify.out).toMatchObject({ code: 0 });
    await removeDeployment(kc, mesh, 'trouble');
  });
});
