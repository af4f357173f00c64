// The product on a node of the shape most clusters run: the VM node (hack/vm-node.sh), a QEMU
// guest with systemd as PID 1, cgroup v2 only, containerd with SystemdCgroup = true and the
// kubelet with cgroupDriver: systemd; and, with the lab node beside it, what only two real
// nodes can show. The guest runs under software emulation: every timeout here is minutes.
import { AppsV1Api, CoreV1Api, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ownerOfCgroupFile } from '../../controller/src/agent/cgroup-path.ts';
import { STATUS_ANNOTATION, parseMark } from '../../controller/src/pod-contract/index.ts';
import type { Mark } from '../../controller/src/pod-contract/index.ts';
import { APP_PORT, IMAGES, connectFromPod, isReady, kubectl, meshNamespace, standInPod, waitForInjection } from '../../hack/lib/real-node.ts';
import { WAITER_CONTAINER } from '../../hack/lib/mesh-pods.ts';
import { kubeConfigForToken } from '../../hack/lib/kube-objects.ts';
import { pollFor } from '../../hack/lib/poll.ts';
import { adminKubeConfig, freshNamespace } from '../support/cluster.ts';

const vmNode = inject('vmNodeName');
const labNode = inject('nodeName');
const labRuntime = inject('nodeRuntime');
const AGENT_NAMESPACE = 'pod-network-controller';
const AGENT_SELECTOR = 'app.kubernetes.io/name=pod-network-controller';
const SLOW = 300_000;
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

const k = (args: string[], timeoutMs = 120_000) => kubectl(inject('binDir'), inject('kubeconfig'), args, timeoutMs);
/** Undoes the test's nodeAffinity that keeps the agent off the VM node. */
const agentOnEveryNode = () =>
  k(['-n', AGENT_NAMESPACE, 'patch', 'daemonset', 'pod-network-controller', '--type=json', '-p', '[{"op":"remove","path":"/spec/template/spec/affinity"}]']);
const poll = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = SLOW) => pollFor(what, probe, timeoutMs);

function markOf(pod: V1Pod): Mark | undefined {
  const text = pod.metadata?.annotations?.[STATUS_ANNOTATION];
  return text === undefined ? undefined : parseMark(text);
}

/** A stand-in pod of KIND bound to NODE. */
function podOn(name: string, kind: 'mesh' | 'plain', node: string): V1Pod {
  const pod = standInPod(name, kind);
  return { ...pod, metadata: { ...pod.metadata, name }, spec: { ...pod.spec!, nodeName: node } };
}

async function readPod(kc: KubeConfig, namespace: string, name: string): Promise<V1Pod> {
  return kc.makeApiClient(CoreV1Api).readNamespacedPod({ namespace, name });
}

const readyPod = (kc: KubeConfig, namespace: string, name: string) =>
  poll(`pod ${namespace}/${name} Ready`, async () => {
    const pod = await readPod(kc, namespace, name);
    return isReady(pod) ? pod : undefined;
  });

async function agentOn(kc: KubeConfig, node: string): Promise<V1Pod | undefined> {
  const pods = await kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: AGENT_NAMESPACE, labelSelector: AGENT_SELECTOR });
  return pods.items.find((p) => p.spec?.nodeName === node && !p.metadata?.deletionTimestamp);
}

const containerId = (pod: V1Pod, container: string) =>
  pod.status!.containerStatuses!.find((s) => s.name === container)!.containerID!.replace(/^containerd:\/\//, '');

describe.skipIf(!vmNode)('the VM node: systemd, cgroup v2, the systemd cgroup driver (skipped without root: no VM node)', () => {
  let kc: KubeConfig;
  let shellNamespace: string;
  /** A command in the guest's own namespaces, through a privileged hostPID pod on it. */
  const inGuest = async (command: string[]) =>
    (await k(['-n', shellNamespace, 'exec', 'guest-shell', '--', 'nsenter', '-t', '1', '-m', '-u', '-i', '-n', '-p', '--', ...command])).trim();
  /** The host PID of a container of the guest, from its runtime. */
  const pidOf = async (id: string) => (JSON.parse(await inGuest(['crictl', 'inspect', id])) as { info: { pid: number } }).info.pid;

  beforeAll(async () => {
    kc = adminKubeConfig();
    shellNamespace = await freshNamespace(kc);
    await kc.makeApiClient(CoreV1Api).createNamespacedPod({
      namespace: shellNamespace,
      body: {
        metadata: { name: 'guest-shell' },
        spec: {
          nodeName: vmNode,
          hostPID: true,
          terminationGracePeriodSeconds: 0,
          containers: [
            { name: 'shell', image: IMAGES.controller, imagePullPolicy: 'Never', command: ['sleep', 'infinity'], securityContext: { privileged: true } },
          ],
        },
      },
    });
    await readyPod(kc, shellNamespace, 'guest-shell');
  });

  it("is the shape most clusters run: systemd as PID 1, cgroup v2 only, SystemdCgroup in containerd, cgroupDriver systemd, the control plane's kubelet version", async () => {
    expect(await inGuest(['cat', '/proc/1/comm'])).toBe('systemd');
    expect(await inGuest(['stat', '-f', '-c', '%T', '/sys/fs/cgroup'])).toBe('cgroup2fs');
    expect(await inGuest(['containerd', 'config', 'dump'])).toMatch(/^\s*SystemdCgroup = true$/m);
    const configz = JSON.parse(await k(['get', '--raw', `/api/v1/nodes/${vmNode}/proxy/configz`])) as { kubeletconfig: { cgroupDriver: string } };
    expect(configz.kubeletconfig.cgroupDriver).toBe('systemd');
    const node = await kc.makeApiClient(CoreV1Api).readNode({ name: vmNode });
    expect(node.status?.nodeInfo?.containerRuntimeVersion).toMatch(/^containerd:\/\//);
    const server = JSON.parse(await k(['version', '-o', 'json'])) as { serverVersion: { gitVersion: string } };
    expect(node.status?.nodeInfo?.kubeletVersion).toBe(server.serverVersion.gitVersion);
  });

  it('runs the DaemonSet as shipped, its agent Ready on the VM node', async () => {
    const agent = await poll('the agent on the VM node Ready', async () => {
      const pod = await agentOn(kc, vmNode);
      return pod && isReady(pod) ? pod : undefined;
    });
    expect(agent.spec?.containers.map((c) => c.image)).toContain(IMAGES.controller);
  });

  it('marks a mesh pod for its real netns and redirects its traffic; a plain pod is untouched; both cgroup views resolve to the pod', async () => {
    const core = kc.makeApiClient(CoreV1Api);
    const mesh = await freshNamespace(kc, meshNamespace('').metadata.labels);
    await waitForInjection(core, mesh);
    await core.createNamespacedPod({ namespace: mesh, body: podOn('traffic', 'mesh', vmNode) });
    await core.createNamespacedPod({ namespace: mesh, body: podOn('plain', 'plain', vmNode) });
    const meshPod = await readyPod(kc, mesh, 'traffic');
    const plainPod = await readyPod(kc, mesh, 'plain');
    expect(meshPod.spec?.initContainers?.map((c) => c.name)).toContain(WAITER_CONTAINER);

    const mark = markOf(meshPod)!;
    expect(mark.state).toBe('initialized');
    const appPid = await pidOf(containerId(meshPod, 'app'));
    expect(mark.netns).toBe(Number(await inGuest(['stat', '-L', '-c', '%i', `/proc/${appPid}/ns/net`])));

    const connect = (pod: string, container: string, address: string, port: number) => connectFromPod(k, mesh, pod, container, address, port);
    expect(await connect('traffic', 'app', '203.0.113.250', 80)).toMatchObject({ listener: 15001, original: '203.0.113.250:80' });
    expect(await connect('traffic', 'app', '2001:db8:adf::77', 80)).toMatchObject({ listener: 15001, original: '[2001:db8:adf::77]:80' });
    expect(markOf(plainPod)).toBeUndefined();
    expect(await connect('plain', 'app', '203.0.113.250', 80).catch((error: Error) => error.message)).toMatch(/connect 203\.0\.113\.250 port 80/);

    // The cgroup paths the agent resolves here: the guest's own view, and the agent's private
    // cgroup namespace (a non-privileged hostPID container), for the mesh pod and for itself.
    const agent = (await agentOn(kc, vmNode))!;
    const fromAgent = (path: string) => k(['-n', AGENT_NAMESPACE, 'exec', agent.metadata!.name!, '--', 'cat', path]);
    const hostView = await inGuest(['cat', `/proc/${appPid}/cgroup`]);
    const agentView = await fromAgent(`/proc/${appPid}/cgroup`);
    const agentSelf = await fromAgent('/proc/self/cgroup');
    console.log(
      `recorded on the VM node: host view ${JSON.stringify(hostView)}, agent view ${JSON.stringify(agentView)}, agent self ${JSON.stringify(agentSelf)}`,
    );
    // The injected waiter's requests make the mesh pod Burstable.
    expect(hostView).toMatch(/^0::\/kubepods\.slice\/kubepods-burstable\.slice\/kubepods-burstable-pod[0-9a-f_]+\.slice\/cri-containerd-[0-9a-f]{64}\.scope$/);
    expect(ownerOfCgroupFile(hostView)).toEqual({ podUid: meshPod.metadata!.uid, containerId: containerId(meshPod, 'app') });
    expect(agentSelf.trim()).toBe('0::/');
    expect(ownerOfCgroupFile(agentView, { kind: 'private', ownPodUid: agent.metadata!.uid! })).toEqual({
      podUid: meshPod.metadata!.uid,
      containerId: containerId(meshPod, 'app'),
    });
  });

  describe.skipIf(!labNode)('with the lab node: two real nodes', () => {
    afterAll(async () => {
      // A failed test must not leave either node without its agent.
      await agentOnEveryNode().catch(() => undefined);
    });

    it("runs the lab node on the runtime PNC_NODE_RUNTIME names (npm test: CRI-O, OpenShift's)", async () => {
      const node = await kc.makeApiClient(CoreV1Api).readNode({ name: labNode });
      expect(node.status?.nodeInfo?.containerRuntimeVersion).toMatch(labRuntime === 'cri-o' ? /^cri-o:\/\// : /^containerd:\/\//);
    });

    it("scopes each agent to its node with the token its node's real kubelet projected: each may mark its own node's pod, not the other's", async () => {
      const core = kc.makeApiClient(CoreV1Api);
      const ns = await freshNamespace(kc);
      await core.createNamespacedPod({ namespace: ns, body: podOn('on-vm', 'plain', vmNode) });
      await core.createNamespacedPod({ namespace: ns, body: podOn('on-lab', 'plain', labNode) });
      const markAs = async (agentNode: string, pod: string) => {
        const agent = (await agentOn(kc, agentNode))!;
        const token = (
          await k(['-n', AGENT_NAMESPACE, 'exec', agent.metadata!.name!, '--', 'cat', '/var/run/secrets/kubernetes.io/serviceaccount/token'])
        ).trim();
        const body = { metadata: { annotations: { [STATUS_ANNOTATION]: JSON.stringify({ state: 'pending', at: '2026-01-01T00:00:00Z', reason: 'test' }) } } };
        return kubeConfigForToken(kc, token)
          .makeApiClient(CoreV1Api)
          .patchNamespacedPodStatus({ name: pod, namespace: ns, body, fieldManager: 'pod-network-controller' }, mergePatch)
          .then(
            () => 'allowed',
            (error: Error) => error.message,
          );
      };
      expect(await markAs(vmNode, 'on-vm')).toBe('allowed');
      expect(await markAs(vmNode, 'on-lab')).toMatch(new RegExp(`pod-network-controller on node ${vmNode} may not update a pod of another node`));
      expect(await markAs(labNode, 'on-lab')).toBe('allowed');
      expect(await markAs(labNode, 'on-vm')).toMatch(new RegExp(`pod-network-controller on node ${labNode} may not update a pod of another node`));
    });

    it("leaves the other node's pods alone: with the VM node's agent off, its mesh pod waits while the lab node's is marked", async () => {
      const core = kc.makeApiClient(CoreV1Api);
      const mesh = await freshNamespace(kc, meshNamespace('').metadata.labels);
      await waitForInjection(core, mesh);
      await k([
        '-n',
        AGENT_NAMESPACE,
        'patch',
        'daemonset',
        'pod-network-controller',
        '--type=merge',
        '-p',
        JSON.stringify({
          spec: {
            template: {
              spec: {
                affinity: {
                  nodeAffinity: {
                    requiredDuringSchedulingIgnoredDuringExecution: {
                      nodeSelectorTerms: [{ matchFields: [{ key: 'metadata.name', operator: 'NotIn', values: [vmNode] }] }],
                    },
                  },
                },
              },
            },
          },
        }),
      ]);
      await poll('the VM node without an agent', async () => ((await agentOn(kc, vmNode)) ? undefined : true));
      await core.createNamespacedPod({ namespace: mesh, body: podOn('on-vm', 'mesh', vmNode) });
      await core.createNamespacedPod({ namespace: mesh, body: podOn('on-lab', 'mesh', labNode) });
      const lab = await readyPod(kc, mesh, 'on-lab');
      expect(markOf(lab)?.state).toBe('initialized');
      expect(await connectFromPod(k, mesh, 'on-lab', 'app', '198.51.100.230', APP_PORT)).toMatchObject({
        listener: 15001,
        original: `198.51.100.230:${APP_PORT}`,
      });
      const held = await poll('the VM pod to run its waiter', async () => {
        const pod = await readPod(kc, mesh, 'on-vm');
        return pod.status?.initContainerStatuses?.find((s) => s.name === WAITER_CONTAINER)?.state?.running ? pod : undefined;
      });
      expect(markOf(held)).toBeUndefined();

      await agentOnEveryNode();
      const vm = await readyPod(kc, mesh, 'on-vm');
      expect(markOf(vm)?.state).toBe('initialized');
    });

    it('rolls the DaemonSet across both nodes while mesh pods are created: every pod marked once and Ready', async () => {
      const core = kc.makeApiClient(CoreV1Api);
      const apps = kc.makeApiClient(AppsV1Api);
      const mesh = await freshNamespace(kc, meshNamespace('').metadata.labels);
      await waitForInjection(core, mesh);
      const before = await apps.readNamespacedDaemonSet({ namespace: AGENT_NAMESPACE, name: 'pod-network-controller' });
      await k(['-n', AGENT_NAMESPACE, 'rollout', 'restart', 'daemonset/pod-network-controller']);
      const names: string[] = [];
      for (let i = 0; i < 4; i++) {
        for (const [node, tag] of [
          [labNode, 'lab'],
          [vmNode, 'vm'],
        ] as const) {
          const name = `${tag}-${i}`;
          await core.createNamespacedPod({ namespace: mesh, body: podOn(name, 'mesh', node) });
          names.push(name);
        }
        await new Promise((resolve) => setTimeout(resolve, 2_000));
      }
      await k(['-n', AGENT_NAMESPACE, 'rollout', 'status', 'daemonset/pod-network-controller', '--timeout=600s'], 660_000);
      const after = await apps.readNamespacedDaemonSet({ namespace: AGENT_NAMESPACE, name: 'pod-network-controller' });
      expect(after.status?.updatedNumberScheduled).toBe(2);
      expect(after.metadata?.generation).toBeGreaterThan(before.metadata!.generation!);
      for (const name of names) {
        const pod = await readyPod(kc, mesh, name);
        expect(markOf(pod)?.state).toBe('initialized');
        const events = await core.listNamespacedEvent({ namespace: mesh, fieldSelector: `involvedObject.name=${name},reason=Initialized` });
        expect(events.items.reduce((n, e) => n + (e.count ?? 1), 0)).toBe(1);
      }
    });
  });
});
