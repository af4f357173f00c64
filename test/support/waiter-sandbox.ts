// Vitest fixture of the init-waiter netns suites: the bundled waiter and one routed pod netns
// for the describe block, a fresh annotations volume per test, and the test's waiter runs
// killed and its volume removed after each test.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { volumeDir } from '../../hack/lib/downward-api.ts';
import { createRoutedNetns, type RoutedNetns } from '../../hack/lib/netns.ts';
import { writeNetnsRecord, type Netns } from '../../controller/src/redirect/index.ts';
import { bundleWaiter, startWaiter, type StartWaiterOptions, type WaiterBundle, type WaiterRun } from '../../hack/lib/waiter-process.ts';

export interface WaiterSandbox {
  /** The routed pod netns (valid from beforeAll on). */
  readonly sandbox: RoutedNetns;
  /** The pod netns as the engine enters it. */
  readonly netns: Netns;
  /** A new volume directory for this test; returns it and its annotations file. */
  freshVolume(): { dir: string; file: string };
  /** Starts the waiter in the pod netns (as UID 65534 unless `identity` says otherwise). */
  start(args: string[], options?: Pick<StartWaiterOptions, 'env' | 'identity'>): WaiterRun;
}

/** Registers the hooks in the current describe block; `ipv6: false` makes an IPv4-only pod. */
export function useWaiterSandbox(options: { ipv6?: boolean } = {}): WaiterSandbox {
  let bundle: WaiterBundle | undefined;
  let sandbox: RoutedNetns | undefined;
  let volume: string | undefined;
  const runs: WaiterRun[] = [];
  beforeAll(() => {
    bundle = bundleWaiter();
    sandbox = createRoutedNetns(options);
  });
  afterAll(() => {
    sandbox?.destroy();
    bundle?.dispose();
  });
  afterEach(async () => {
    for (const run of runs.splice(0)) run.kill();
    if (volume) rmSync(volume, { recursive: true, force: true });
    volume = undefined;
    // No test inherits the netns record (lo's alias) of the one before.
    if (sandbox) await writeNetnsRecord({ path: sandbox.pod.path, inode: sandbox.inode }, '');
  });
  return {
    get sandbox() {
      return sandbox!;
    },
    get netns() {
      return { path: sandbox!.pod.path, inode: sandbox!.inode };
    },
    freshVolume() {
      volume = volumeDir();
      return { dir: volume, file: join(volume, 'annotations') };
    },
    start(args, options = {}) {
      const run = startWaiter(bundle!, { netnsPath: sandbox!.pod.path, args, ...options });
      runs.push(run);
      return run;
    },
  };
}
