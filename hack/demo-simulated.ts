// `npm run demo -- --simulated` (root): the fast path, no node, no images. A real local
// control plane with one simulated node, the agent running as that node as a host
// process, a mesh pod and a plain pod with simulated sandboxes; shows the mark, the Event,
// the rules in the mesh pod's netns, a redirected connection and the untouched plain pod,
// with timings; then removes everything it made. A control plane the demo started is
// stopped at the end (--keep-cluster keeps it).
import { KubeConfig } from '@kubernetes/client-node';
import { parseMark, STATUS_ANNOTATION } from '../controller/src/pod-contract/index.ts';
import { detectIptablesMode, planFromPod, verifyRedirect } from '../controller/src/redirect/index.ts';
import { startController } from './lib/controller-process.ts';
import type { ControllerProcess } from './lib/controller-process.ts';
import { MeshFixture, uniqueSuffix } from './lib/mesh-fixture.ts';
import { APP_UID, meshPod, plainPod, PROXY_UID } from './lib/mesh-pods.ts';
import { check, finishDemo, indent, printNatRules, step } from './lib/demo-output.ts';
import { ensureBundles } from './lib/ensure-bundles.ts';
import { ensureLocalCluster, isLocalClusterRunning } from './lib/local-cluster.ts';
import { connectFrom, startListeners } from './lib/netns.ts';
import { jumpRuleCounts, noRedirectRules } from './lib/redirect-probe.ts';

const REMOTE_PORT = 8080;
const OUTBOUND_CAPTURE_PORT = 15001;

if (process.getuid?.() !== 0) {
  console.error('npm run demo needs root: it creates network namespaces, iptables rules and cgroups');
  process.exit(2);
}

const started = performance.now();
let controller: ControllerProcess | undefined;
let fixture: MeshFixture | undefined;
let exitCode = 0;
// A control plane the demo started is stopped at the end (--keep-cluster keeps it for the next run).
let clusterWasRunning = true;
const keepCluster = process.argv.includes('--keep-cluster');

// `npm run demo | head` must not kill the demo before its cleanup.
process.stdout.on('error', () => undefined);
// Ctrl-C: remove what was made, then exit.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: cleaning up`);
    void Promise.allSettled([controller?.stop('SIGTERM'), fixture?.cleanup()]).then(() => process.exit(130));
  });
}
try {
  step('bundles');
  console.log(ensureBundles() ? '   built dist/controller.js and dist/init-waiter.js' : '   dist/ is up to date');

  step('local control plane (etcd + kube-apiserver)');
  clusterWasRunning = await isLocalClusterRunning();
  const { kubeconfig } = await ensureLocalCluster();
  if (clusterWasRunning) console.log('   reusing the control plane already running (it keeps running afterwards)');
  console.log(`   KUBECONFIG=${kubeconfig}`);
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);

  const nodeName = `demo-node-${uniqueSuffix()}`;
  step(`simulated node ${nodeName} and the agent running as it`);
  fixture = new MeshFixture(kc, nodeName);
  await fixture.createNode();
  const agentStart = performance.now();
  controller = await startController({ kubeconfig, nodeName, env: { LOG_LEVEL: 'info' } });
  console.log(`   node dist/controller.js run   (pid ${controller.pid}, NODE_NAME=${nodeName}, http://127.0.0.1:${controller.port})`);
  console.log(`   /readyz 200 after ${Math.round(performance.now() - agentStart)} ms`);

  step('a mesh namespace with a mesh pod (app + istio-proxy + pnc-init-waiter) and a plain pod');
  const ns = await fixture.namespace('demo-mesh');
  const mesh = await fixture.createPod(ns, meshPod('mesh-app', nodeName), { sandbox: false });
  const plain = await fixture.createPod(ns, plainPod('plain-app', nodeName), { sandbox: false });
  const meshSandbox = await fixture.addSandbox(mesh);
  const sandboxReady = performance.now();
  // A 20 ms poll (finer than the tests'), for the timing.
  const marked = fixture.waitForInitialized(mesh, 30_000, 20).then((mark) => ({ mark, seen: performance.now() }));
  const plainSandbox = await fixture.addSandbox(plain);
  console.log(`   pod ${ns}/mesh-app   netns inode ${meshSandbox.netnsInode}, IPs ${meshSandbox.podIPs.join(' ')}`);
  console.log(`   pod ${ns}/plain-app  netns inode ${plainSandbox.netnsInode}, IPs ${plainSandbox.podIPs.join(' ')}`);

  step(`the mark on ${ns}/mesh-app (annotation ${STATUS_ANNOTATION})`);
  const { mark, seen: markSeen } = await marked;
  console.log(indent(JSON.stringify(mark, null, 2)));
  check(mark.netns === meshSandbox.netnsInode, `mark.netns ${mark.netns} is the pod's own netns inode`);

  step('the Initialized Event (events.k8s.io/v1)');
  const event = await fixture.waitForEvent(mesh, 'Initialized');
  console.log(
    indent(
      [
        `type: ${event.type}   reason: ${event.reason}   regarding: Pod ${event.regarding?.namespace}/${event.regarding?.name}`,
        `reportingController: ${event.reportingController}   reportingInstance: ${event.reportingInstance}`,
        `note: ${event.note}`,
      ].join('\n'),
    ),
  );

  const { mode } = await detectIptablesMode();
  step(`the rules in mesh-app's netns (${mode} backend)`);
  await printNatRules(meshSandbox.netnsPath, mode);
  const verified = await verifyRedirect(meshSandbox.netnsPath, planFromPod(mesh.pod), { mode });
  check(verified.ok, `the engine reads back exactly the pod's plan, IPv4 and IPv6${verified.ok ? '' : `:\n${verified.diff}`}`);

  step('a redirected connection');
  const remoteIP = meshSandbox.peerIPs[0]!;
  // Each listener answers "<name>:<port>", so the answer says which socket took the connection.
  const proxy = await startListeners(meshSandbox.netnsPath, 'mesh-app proxy', [OUTBOUND_CAPTURE_PORT]);
  const meshRemote = await startListeners(meshSandbox.peerNetnsPath, `remote host ${remoteIP}`, [REMOTE_PORT]);
  const plainRemoteIP = plainSandbox.peerIPs[0]!;
  const plainRemote = await startListeners(plainSandbox.peerNetnsPath, `remote host ${plainRemoteIP}`, [REMOTE_PORT]);
  try {
    const app = await connectFrom(meshSandbox.netnsPath, remoteIP, REMOTE_PORT, APP_UID);
    console.log(`   mesh-app, app UID ${APP_UID}, connects to ${remoteIP}:${REMOTE_PORT}  -> answered by: ${app}`);
    check(app === `mesh-app proxy:${OUTBOUND_CAPTURE_PORT}`, 'the app was redirected to the proxy');
    const own = await connectFrom(meshSandbox.netnsPath, remoteIP, REMOTE_PORT, PROXY_UID);
    console.log(`   mesh-app, proxy UID ${PROXY_UID}, connects to ${remoteIP}:${REMOTE_PORT} -> answered by: ${own}`);
    check(own === `remote host ${remoteIP}:${REMOTE_PORT}`, "the proxy's own traffic goes out directly (no loop)");

    step('the plain pod is untouched');
    const plainMark = (await fixture.readPod(plain)).metadata?.annotations?.[STATUS_ANNOTATION];
    console.log(`   mark: ${plainMark === undefined ? '(none)' : JSON.stringify(parseMark(plainMark))}`);
    check(plainMark === undefined, 'no mark on plain-app');
    check(noRedirectRules(await jumpRuleCounts(plainSandbox.netnsPath)), "no ISTIO_* chains in plain-app's netns (legacy or nft, IPv4 or IPv6)");
    const direct = await connectFrom(plainSandbox.netnsPath, plainRemoteIP, REMOTE_PORT, APP_UID);
    console.log(`   plain-app, app UID ${APP_UID}, connects to ${plainRemoteIP}:${REMOTE_PORT} -> answered by: ${direct}`);
    check(direct === `remote host ${plainRemoteIP}:${REMOTE_PORT}`, 'plain-app reaches the remote host directly');
  } finally {
    for (const listener of [proxy, meshRemote, plainRemote]) listener.stop();
  }

  step('timings');
  // mark.at is written by the agent on this same machine, so both clocks agree.
  if (/\.\d+/.test(mark.at)) {
    console.log(`   sandbox ready -> mark written (mark.at):     ${Math.round(Date.parse(mark.at) - (performance.timeOrigin + sandboxReady))} ms`);
  }
  console.log(`   sandbox ready -> mark seen by a 20 ms poll:  ${Math.round(markSeen - sandboxReady)} ms`);
  console.log(`   the agent's own measure (Initialized note):  ${event.note}`);
} catch (error) {
  console.error(`\ndemo FAILED: ${error instanceof Error ? error.message : String(error)}`);
  if (controller)
    console.error(
      `agent's last log lines:\n${controller.logs
        .slice(-10)
        .map((line) => JSON.stringify(line))
        .join('\n')}`,
    );
  exitCode = 1;
} finally {
  step('cleanup');
  await controller?.stop('SIGTERM');
  console.log('   agent stopped (SIGTERM)');
  try {
    await fixture?.cleanup();
    console.log('   sandboxes (netns, veths, pause processes, cgroups), pods, the namespace and the Node removed');
  } catch (error) {
    console.error(`   cleanup failed: ${String(error)}`);
    exitCode = 1;
  }
}
await finishDemo({ exitCode, started, keep: clusterWasRunning || keepCluster, what: 'the local control plane' });
